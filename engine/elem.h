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

#endif
