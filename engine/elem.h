/* elem.h: per-element math shared by the CPU ops and the CUDA kernels, so
 * the PyTorch-checked CPU tests cover the kernels' arithmetic too. Under
 * nvcc SMOE_HD makes each function callable on host and device; the CUDA
 * files that use them are compiled with --fmad=false, so that a*b + c is
 * rounded twice there as gcc's ISO C mode does, and results match the CPU
 * bit for bit. */
#ifndef SMOE_ELEM_H
#define SMOE_ELEM_H

#include <math.h>

#ifdef __CUDACC__
#define SMOE_HD static __host__ __device__ __forceinline__
#else
#define SMOE_HD static inline
#endif

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
