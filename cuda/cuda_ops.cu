/* cuda_ops.cu: the flat-buffer kernels (cuda_ops.h). Compiled with
 * --fmad=false: the per-element math of elem.h rounds as on the CPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

#include "cuda_ops.h"
#include "elem.h"

/* The CUDA error of the last call, or of a launch, into err; -1 on error. */
static int check(cudaError_t e, const char *what, char *err, size_t err_len) {
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e == cudaSuccess) return 0;
  if (err) snprintf(err, err_len, "%s: %s (CUDA error %d)", what, cudaGetErrorString(e), (int)e);
  return -1;
}

static unsigned blocks_for(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 65535 * 32 ? (b ? b : 1) : 65535 * 32);
}

extern "C" int smoe_cuda_available(char *why, size_t why_len) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    snprintf(why, why_len, "no CUDA device: %s",
             e != cudaSuccess ? cudaGetErrorString(e) : "the driver lists none");
    return 0;
  }
  e = cudaSetDevice(0);
  if (e != cudaSuccess) {
    snprintf(why, why_len, "CUDA device 0 unusable: %s", cudaGetErrorString(e));
    return 0;
  }
  return 1;
}

extern "C" int smoe_cuda_alloc(void **p, size_t bytes, char *err, size_t err_len) {
  *p = NULL;
  if (check(cudaMalloc(p, bytes ? bytes : 1), "cudaMalloc", err, err_len)) return -1;
  if (check(cudaMemset(*p, 0, bytes ? bytes : 1), "cudaMemset", err, err_len) == 0) return 0;
  cudaFree(*p);
  *p = NULL;
  return -1;
}

extern "C" void smoe_cuda_free(void *p) {
  cudaFree(p);
}

extern "C" int smoe_cuda_to_device(void *dst, const void *src, size_t bytes, char *err,
                                   size_t err_len) {
  return check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device", err, err_len);
}

extern "C" int smoe_cuda_to_host(void *dst, const void *src, size_t bytes, char *err,
                                 size_t err_len) {
  return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host", err, err_len);
}

/* grid-stride loops: any n with any grid */
#define FOR_EACH(i, n)                                                    \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)

static __global__ void fill_kernel(float *x, float v, size_t n) {
  FOR_EACH(i, n) x[i] = v;
}

static __global__ void add_kernel(float *y, const float *x, size_t n) {
  FOR_EACH(i, n) y[i] += x[i];
}

static __global__ void scale_kernel(float *x, size_t n, float s) {
  FOR_EACH(i, n) x[i] *= s;
}

static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                    float decay, float step, float b1, float b2, float sbc2,
                                    float eps) {
  FOR_EACH(i, n) smoe_adamw_elem_f32(p + i, g[i], m + i, v + i, decay, step, b1, b2, sbc2, eps);
}

static __global__ void swiglu_kernel(float *act, const float *h13, int64_t rows, int F) {
  FOR_EACH(i, (size_t)rows * F) {
    const float *h1 = h13 + (i / F) * 2 * (size_t)F + i % F;
    act[i] = smoe_swiglu_f32(h1[0], h1[F]);
  }
}

static __global__ void swiglu_backward_kernel(float *dh13, const float *dact, const float *h13,
                                              int64_t rows, int F) {
  FOR_EACH(i, (size_t)rows * F) {
    size_t at = (i / F) * 2 * (size_t)F + i % F;
    smoe_swiglu_backward_f32(dact[i], h13[at], h13[at + F], dh13 + at, dh13 + at + F);
  }
}

/* one thread per element of a row moved or summed: (n, k, i) or (n, i) */
static __global__ void moe_gather_kernel(float *xe, const float *x, const int *pos, int N, int K,
                                         int D) {
  FOR_EACH(j, (size_t)N * K * D) {
    size_t a = j / D, i = j % D;
    if (pos[a] >= 0) xe[(size_t)pos[a] * D + i] = x[(a / K) * D + i];
  }
}

static __global__ void moe_gather_backward_kernel(float *dx, const float *dxe, const int *pos,
                                                  int N, int K, int D) {
  FOR_EACH(j, (size_t)N * D) {
    size_t n = j / D, i = j % D;
    for (int k = 0; k < K; k++) { /* the choices in order, as the CPU */
      int p = pos[n * K + k];
      if (p >= 0) dx[j] += dxe[(size_t)p * D + i];
    }
  }
}

static __global__ void moe_combine_kernel(float *out, const float *ye, const float *gw,
                                          const int *pos, int N, int K, int D) {
  FOR_EACH(j, (size_t)N * D) {
    size_t n = j / D, i = j % D;
    for (int k = 0; k < K; k++) {
      int p = pos[n * K + k];
      if (p >= 0) out[j] += gw[n * K + k] * ye[(size_t)p * D + i];
    }
  }
}

static __global__ void moe_combine_dye_kernel(float *dye, const float *dout, const float *gw,
                                              const int *pos, int N, int K, int D) {
  FOR_EACH(j, (size_t)N * K * D) {
    size_t a = j / D, i = j % D;
    if (pos[a] >= 0) dye[(size_t)pos[a] * D + i] = gw[a] * dout[(a / K) * D + i];
  }
}

/* one thread per assignment: the dot product in the CPU's order, in float */
static __global__ void moe_combine_dgw_kernel(float *dgw, const float *dout, const float *ye,
                                              const int *pos, int N, int K, int D) {
  FOR_EACH(a, (size_t)N * K) {
    float s = 0;
    if (pos[a] >= 0)
      for (int i = 0; i < D; i++) s += dout[(a / K) * D + i] * ye[(size_t)pos[a] * D + i];
    dgw[a] = s;
  }
}

static __global__ void permute_rows_kernel(float *out, const float *in, const int *map,
                                           int64_t rows, int D, int scatter) {
  FOR_EACH(j, (size_t)rows * D) {
    size_t r = j / D, i = j % D;
    if (scatter)
      out[(size_t)map[r] * D + i] = in[j];
    else
      out[j] = in[(size_t)map[r] * D + i];
  }
}

enum { SUMSQ_BLOCK = 4096 }; /* optim.c's BLOCK */

/* one thread per block of SUMSQ_BLOCK elements, summed in order in double */
static __global__ void sumsq_kernel(const float *x, size_t n, size_t nb, double *part) {
  FOR_EACH(b, nb) {
    size_t lo = b * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
    double t = 0;
    for (size_t i = lo; i < hi; i++) t += (double)x[i] * x[i];
    part[b] = t;
  }
}

enum { THREADS = 256 };

extern "C" int smoe_cuda_fill(float *x, float v, size_t n, char *err, size_t err_len) {
  if (n) fill_kernel<<<blocks_for(n, THREADS), THREADS>>>(x, v, n);
  return check(cudaDeviceSynchronize(), "fill", err, err_len);
}

extern "C" int smoe_cuda_add(float *y, const float *x, size_t n, char *err, size_t err_len) {
  if (n) add_kernel<<<blocks_for(n, THREADS), THREADS>>>(y, x, n);
  return check(cudaDeviceSynchronize(), "add", err, err_len);
}

extern "C" int smoe_cuda_scale(float *x, size_t n, float s, char *err, size_t err_len) {
  if (n) scale_kernel<<<blocks_for(n, THREADS), THREADS>>>(x, n, s);
  return check(cudaDeviceSynchronize(), "scale", err, err_len);
}

extern "C" int smoe_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, double lr,
                               double beta1, double beta2, double eps, double weight_decay,
                               int64_t t, char *err, size_t err_len) {
  /* the scalars exactly as optim.c computes them, on the host */
  const double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
  const float decay = (float)(1.0 - lr * weight_decay), step = (float)(lr / bc1);
  if (n)
    adamw_kernel<<<blocks_for(n, THREADS), THREADS>>>(p, g, m, v, n, decay, step, (float)beta1,
                                                      (float)beta2, (float)sqrt(bc2), (float)eps);
  return check(cudaDeviceSynchronize(), "adamw", err, err_len);
}

extern "C" int smoe_cuda_swiglu(float *act, const float *h13, int64_t rows, int F, char *err,
                                size_t err_len) {
  size_t n = (size_t)rows * F;
  if (n) swiglu_kernel<<<blocks_for(n, THREADS), THREADS>>>(act, h13, rows, F);
  return check(cudaDeviceSynchronize(), "swiglu", err, err_len);
}

extern "C" int smoe_cuda_swiglu_backward(float *dh13, const float *dact, const float *h13,
                                         int64_t rows, int F, char *err, size_t err_len) {
  size_t n = (size_t)rows * F;
  if (n) swiglu_backward_kernel<<<blocks_for(n, THREADS), THREADS>>>(dh13, dact, h13, rows, F);
  return check(cudaDeviceSynchronize(), "swiglu backward", err, err_len);
}

extern "C" int smoe_cuda_moe_gather(float *xe, const float *x, const int *pos, int N, int K, int D,
                                    char *err, size_t err_len) {
  size_t n = (size_t)N * K * D;
  if (n) moe_gather_kernel<<<blocks_for(n, THREADS), THREADS>>>(xe, x, pos, N, K, D);
  return check(cudaDeviceSynchronize(), "moe gather", err, err_len);
}

extern "C" int smoe_cuda_moe_gather_backward(float *dx, const float *dxe, const int *pos, int N,
                                             int K, int D, char *err, size_t err_len) {
  size_t n = (size_t)N * D;
  if (n) moe_gather_backward_kernel<<<blocks_for(n, THREADS), THREADS>>>(dx, dxe, pos, N, K, D);
  return check(cudaDeviceSynchronize(), "moe gather backward", err, err_len);
}

extern "C" int smoe_cuda_moe_combine(float *out, const float *ye, const float *gw, const int *pos,
                                     int N, int K, int D, char *err, size_t err_len) {
  size_t n = (size_t)N * D;
  if (n) moe_combine_kernel<<<blocks_for(n, THREADS), THREADS>>>(out, ye, gw, pos, N, K, D);
  return check(cudaDeviceSynchronize(), "moe combine", err, err_len);
}

extern "C" int smoe_cuda_moe_combine_backward(float *dye, float *dgw, const float *dout,
                                              const float *ye, const float *gw, const int *pos,
                                              int N, int K, int D, char *err, size_t err_len) {
  size_t n = (size_t)N * K * D, na = (size_t)N * K;
  if (n) moe_combine_dye_kernel<<<blocks_for(n, THREADS), THREADS>>>(dye, dout, gw, pos, N, K, D);
  if (na) moe_combine_dgw_kernel<<<blocks_for(na, 64), 64>>>(dgw, dout, ye, pos, N, K, D);
  return check(cudaDeviceSynchronize(), "moe combine backward", err, err_len);
}

extern "C" int smoe_cuda_permute_rows(float *out, const float *in, const int *map, int64_t rows,
                                      int D, int scatter, char *err, size_t err_len) {
  size_t n = (size_t)rows * D;
  if (n) permute_rows_kernel<<<blocks_for(n, THREADS), THREADS>>>(out, in, map, rows, D, scatter);
  return check(cudaDeviceSynchronize(), "permute rows", err, err_len);
}

extern "C" int smoe_cuda_sumsq(const float *x, size_t n, double *out, char *err, size_t err_len) {
  const size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
  *out = 0;
  if (!nb) return 0;
  double *part = NULL, *host = (double *)malloc(sizeof(double) * nb);
  int rc = host ? 0 : -1;
  if (!host && err) snprintf(err, err_len, "sumsq: out of host memory for %zu partial sums", nb);
  if (rc == 0) rc = check(cudaMalloc(&part, sizeof(double) * nb), "sumsq", err, err_len);
  if (rc == 0) {
    sumsq_kernel<<<blocks_for(nb, 64), 64>>>(x, n, nb, part);
    rc = check(cudaMemcpy(host, part, sizeof(double) * nb, cudaMemcpyDeviceToHost), "sumsq", err,
               err_len);
  }
  for (size_t b = 0; rc == 0 && b < nb; b++) *out += host[b]; /* blocks in order */
  cudaFree(part);
  free(host);
  return rc;
}
