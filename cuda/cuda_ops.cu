/* cuda_ops.cu: the flat-buffer ops of cuda_ops.h (fill, copy, add, scale,
 * AdamW, sum of squares) and the row permute, in `real`, on the shared
 * stream. Compiled with --fmad=false: the per-element math of elem.h rounds
 * as on the CPU, and every op here gives the CPU's bits. */
#include <math.h>
#include <string.h>

#include "cuda_common.h"
#include "cuda_ops.h"
#include "elem.h"

#ifdef SMOE_REAL_DOUBLE
#define adamw_elem smoe_adamw_elem_f64
#else
#define adamw_elem smoe_adamw_elem_f32
#endif

/* one thread per element (grid-stride) */
static __global__ void fill_kernel(real *x, real v, size_t n) {
  FOR_EACH(i, n) x[i] = v;
}

static __global__ void add_kernel(real *y, const real *x, size_t n) {
  FOR_EACH(i, n) y[i] += x[i];
}

static __global__ void scale_kernel(real *x, size_t n, real s) {
  FOR_EACH(i, n) x[i] *= s;
}

static __global__ void adamw_kernel(real *p, const real *g, real *m, real *v, size_t n, real decay,
                                    real step, real b1, real b2, real sbc2, real eps) {
  FOR_EACH(i, n) adamw_elem(p + i, g[i], m + i, v + i, decay, step, b1, b2, sbc2, eps);
}

/* one thread per element of the moved rows: (row, i) */
static __global__ void permute_rows_kernel(real *out, const real *in, const int *map, int64_t rows,
                                           int D, int scatter) {
  FOR_EACH(j, (size_t)rows * D) {
    size_t r = j / D, i = j % D;
    if (scatter)
      out[(size_t)map[r] * D + i] = in[j];
    else
      out[j] = in[(size_t)map[r] * D + i];
  }
}

enum { SUMSQ_BLOCK = 4096 }; /* optim.c's BLOCK */

/* one thread per block of SUMSQ_BLOCK elements, summed in order in double
 * as optim.c does; the blocks' partial sums are added on the host in block
 * order, so the result has the CPU's bits */
static __global__ void sumsq_kernel(const real *x, size_t n, size_t nb, double *part) {
  FOR_EACH(b, nb) {
    size_t lo = b * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
    double t = 0;
    for (size_t i = lo; i < hi; i++) t += (double)x[i] * x[i];
    part[b] = t;
  }
}

extern "C" void smoe_cuda_fill(real *x, real v, size_t n) {
  if (v == 0) { /* as the CPU: all-zero bits, also for -0 */
    if (n) CU(cudaMemsetAsync(x, 0, sizeof(real) * n, smoe_cuda_stream()));
    return;
  }
  LAUNCH(fill_kernel, n, x, v, n);
}

extern "C" void smoe_cuda_copy(real *dst, const real *src, size_t n) {
  const size_t bytes = sizeof(real) * n;
  if (!n || dst == src) return;
  cudaStream_t s = smoe_cuda_stream();
  if (dst < src + n && src < dst + n) { /* overlapping (memmove): through scratch 0 */
    void *tmp = smoe_cuda_scratch(0, bytes);
    CU(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, s));
    CU(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, s));
    return;
  }
  CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

extern "C" void smoe_cuda_add(real *y, const real *x, size_t n) {
  LAUNCH(add_kernel, n, y, x, n);
}

extern "C" void smoe_cuda_scale(real *x, size_t n, real s) {
  LAUNCH(scale_kernel, n, x, n, s);
}

extern "C" void smoe_cuda_adamw(real *p, const real *g, real *m, real *v, size_t n,
                                const smoe_adamw_t *o, int64_t t) {
  /* the scalars exactly as optim.c computes them, on the host */
  const double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
  const real decay = (real)(1.0 - o->lr * o->weight_decay), step = (real)(o->lr / bc1),
             b1 = (real)o->beta1, b2 = (real)o->beta2, sbc2 = (real)sqrt(bc2), eps = (real)o->eps;
  LAUNCH(adamw_kernel, n, p, g, m, v, n, decay, step, b1, b2, sbc2, eps);
}

extern "C" double smoe_cuda_sumsq(const real *x, size_t n) {
  const size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
  if (!nb) return 0;
  double *part = (double *)smoe_cuda_scratch(1, sizeof(double) * nb);
  double *host = (double *)smoe_cuda_pinned(0, sizeof(double) * nb);
  LAUNCH(sumsq_kernel, nb, x, n, nb, part);
  smoe_cuda_download(host, part, sizeof(double) * nb);
  double s = 0;
  for (size_t b = 0; b < nb; b++) s += host[b]; /* blocks in order, as optim.c */
  return s;
}

extern "C" void smoe_cuda_permute_rows(real *out, const real *in, const int *map, int64_t rows,
                                       int D, int scatter) {
  LAUNCH(permute_rows_kernel, (size_t)rows * D, out, in, map, rows, D, scatter);
}
