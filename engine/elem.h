/* elem.h: per-element math shared by the CPU ops and the CUDA kernels, so
 * the PyTorch-checked CPU tests cover the kernels' arithmetic too. Under
 * nvcc SMOE_HD makes each function callable on host and device; the CUDA
 * files that use them are compiled with --fmad=false, so that a*b + c is
 * rounded twice there as gcc's ISO C mode does, and results match the CPU
 * bit for bit. */
#ifndef SMOE_ELEM_H
#define SMOE_ELEM_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SMOE_HD static __host__ __device__ __forceinline__
#else
#define SMOE_HD static inline
#endif

/* exp for float: a Cephes-style polynomial (relative error < 2e-7, i.e. about
 * 1 ulp) that, unlike libm's expf, the compiler vectorizes inside loops. */
SMOE_HD float smoe_exp_f32(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x); /* 2^n stays a normal float */
  float n = floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* x - n ln2, in two parts */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
#ifdef __CUDA_ARCH__
  return p * __int_as_float(((int32_t)n + 127) << 23);
#else
  union {
    float f;
    int32_t i;
  } scale;
  scale.i = ((int32_t)n + 127) << 23;
  return p * scale.f;
#endif
}
SMOE_HD double smoe_exp_f64(double x) {
  return exp(x);
}

/* SwiGLU, one element: act = silu(h1) h3 with silu(x) = x sigmoid(x); its
 * backward from g = d(act): d1 = g h3 silu'(h1), d3 = g silu(h1). */
#define SMOE_DEFINE_SWIGLU(sfx, T)                                         \
  SMOE_HD T smoe_sigmoid_##sfx(T x) {                                      \
    return 1 / (1 + smoe_exp_##sfx(-x));                                   \
  }                                                                        \
  SMOE_HD T smoe_swiglu_##sfx(T h1, T h3) {                                \
    return h1 * smoe_sigmoid_##sfx(h1) * h3;                               \
  }                                                                        \
  SMOE_HD void smoe_swiglu_backward_##sfx(T g, T h1, T h3, T *d1, T *d3) { \
    T s = smoe_sigmoid_##sfx(h1), silu = h1 * s;                           \
    *d1 = g * h3 * (s + silu * (1 - s));                                   \
    *d3 = g * silu;                                                        \
  }
SMOE_DEFINE_SWIGLU(f32, float)
SMOE_DEFINE_SWIGLU(f64, double)

/* One AdamW element (optim.h): decoupled decay, the moments, then the step,
 * with the bias corrections folded into step = lr / bc1 and sbc2 =
 * sqrt(bc2). One definition per precision (sqrtf is correctly rounded, as
 * the double sqrt rounded to float is: the same bits). */
#define SMOE_DEFINE_ADAMW_ELEM(name, T, SQRT)                                            \
  SMOE_HD void name(T *p, T g, T *m, T *v, T decay, T step, T b1, T b2, T sbc2, T eps) { \
    *p *= decay;                                                                         \
    *m = b1 * *m + (1 - b1) * g;                                                         \
    *v = b2 * *v + (1 - b2) * g * g;                                                     \
    *p -= step * *m / (SQRT(*v) / sbc2 + eps);                                           \
  }
SMOE_DEFINE_ADAMW_ELEM(smoe_adamw_elem_f32, float, sqrtf)
SMOE_DEFINE_ADAMW_ELEM(smoe_adamw_elem_f64, double, sqrt)

/* One row of the router (moe.h's smoe_router_forward), in place: p (E)
 * holds the logits and becomes their softmax, *lse = logsumexp; id/w (K) =
 * the top K experts by p + bias (bias (E) may be NULL; strict '>' keeps the
 * lower index on ties) and their probabilities renormalised to sum to 1.
 * The CPU loops over rows calling it; the CUDA kernel runs one row a thread
 * (the float path is bitwise equal; the double one differs only by the
 * device's exp and log, within an ulp each). */
#define SMOE_DEFINE_ROUTER_ROW(sfx, T)                                                      \
  SMOE_HD void smoe_router_row_##sfx(T *p, T *lse, int32_t *id, T *w, const T *bias, int E, \
                                     int K) {                                               \
    T mx = p[0];                                                                            \
    for (int e = 1; e < E; e++)                                                             \
      if (p[e] > mx) mx = p[e];                                                             \
    double sum = 0;                                                                         \
    for (int e = 0; e < E; e++) {                                                           \
      p[e] = smoe_exp_##sfx(p[e] - mx);                                                     \
      sum += p[e];                                                                          \
    }                                                                                       \
    *lse = (T)(mx + log(sum));                                                              \
    T inv = (T)(1.0 / sum);                                                                 \
    for (int e = 0; e < E; e++) p[e] *= inv;                                                \
    /* top-k by repeated argmax */                                                          \
    T wsum = 0;                                                                             \
    for (int k = 0; k < K; k++) {                                                           \
      int best = -1;                                                                        \
      T bv = 0;                                                                             \
      for (int e = 0; e < E; e++) {                                                         \
        int taken = 0;                                                                      \
        for (int j = 0; j < k; j++) taken |= id[j] == e;                                    \
        if (taken) continue;                                                                \
        T s = p[e] + (bias ? bias[e] : 0);                                                  \
        if (best < 0 || s > bv) best = e, bv = s;                                           \
      }                                                                                     \
      id[k] = best;                                                                         \
      w[k] = p[best];                                                                       \
      wsum += p[best];                                                                      \
    }                                                                                       \
    for (int k = 0; k < K; k++) w[k] /= wsum;                                               \
  }
SMOE_DEFINE_ROUTER_ROW(f32, float)
SMOE_DEFINE_ROUTER_ROW(f64, double)

/* The router's backward for one row (moe.h's smoe_router_backward): g (E) =
 * d(loss)/d(logits), written, from the row's probs p (E), lse, choices id,
 * gate weights w and their gradient dw (K), the aux term aux_dp (E, may be
 * NULL) and z_scale. Only + - * /: bitwise equal on the GPU. */
#define SMOE_DEFINE_ROUTER_BACKWARD_ROW(sfx, T)                                                    \
  SMOE_HD void smoe_router_backward_row_##sfx(T *g, const T *p, T lse, const int32_t *id,          \
                                              const T *w, const T *dw, const T *aux_dp, T z_scale, \
                                              int E, int K) {                                      \
    /* dp: aux term for every expert, then the renormalised top-k weights                          \
     * w_k = p_k / s: dp_j = (dw_j - sum_k dw_k w_k) / s for selected j. */                        \
    for (int e = 0; e < E; e++) g[e] = aux_dp ? aux_dp[e] : 0;                                     \
    T s = 0, wdw = 0;                                                                              \
    for (int k = 0; k < K; k++) {                                                                  \
      s += p[id[k]];                                                                               \
      wdw += w[k] * dw[k];                                                                         \
    }                                                                                              \
    for (int k = 0; k < K; k++) g[id[k]] += (dw[k] - wdw) / s;                                     \
    /* through the softmax, then the z-loss term d(lse^2)/dlogit = 2 lse p */                      \
    T pg = 0;                                                                                      \
    for (int e = 0; e < E; e++) pg += p[e] * g[e];                                                 \
    T zl = z_scale * lse;                                                                          \
    for (int e = 0; e < E; e++) g[e] = p[e] * (g[e] - pg) + zl * p[e];                             \
  }
SMOE_DEFINE_ROUTER_BACKWARD_ROW(f32, float)
SMOE_DEFINE_ROUTER_BACKWARD_ROW(f64, double)

/* fp32 to bfloat16, round to nearest even (NaN stays a quiet NaN): the bits
 * of the bf16 number, the upper half of the float it rounds to. GEMM
 * operands in training.dtype = bf16 are these, on the GPU and in the CPU
 * reference. */
SMOE_HD uint16_t smoe_bf16_bits(float x) {
#ifdef __CUDA_ARCH__
  uint32_t u = __float_as_uint(x);
#else
  union {
    float f;
    uint32_t u;
  } v = {x};
  uint32_t u = v.u;
#endif
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
SMOE_HD float smoe_bf16_round(float x) {
#ifdef __CUDA_ARCH__
  return __uint_as_float((uint32_t)smoe_bf16_bits(x) << 16);
#else
  union {
    uint32_t u;
    float f;
  } v = {(uint32_t)smoe_bf16_bits(x) << 16};
  return v.f;
#endif
}

#endif
