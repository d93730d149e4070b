/* bench_gpu.h: what the GPU benchmark programs share: CUDA and cuBLAS calls
 * that end the program with the call's text on failure, and the median time
 * of a piece of GPU work. BENCH_NAME (a string) prefixes the messages. */
#ifndef SMOE_BENCH_GPU_H
#define SMOE_BENCH_GPU_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                          \
  do {                                                                                 \
    cudaError_t e_ = (x);                                                              \
    if (e_ != cudaSuccess) {                                                           \
      fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, #x, cudaGetErrorString(e_));         \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)
#define CB(x)                                                                          \
  do {                                                                                 \
    cublasStatus_t s_ = (x);                                                           \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
      fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, #x, cublasGetStatusString(s_));      \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

static int bench_cmpf(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* The median milliseconds of fn over reps runs (at most 64) after one
 * warm-up, timed with CUDA events on the default stream. */
template <typename F> static float median_ms(int reps, F fn) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  fn();
  float t[64];
  reps = reps < 1 ? 1 : reps < 64 ? reps : 64;
  for (int i = 0; i < reps; i++) {
    CK(cudaEventRecord(a));
    fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  qsort(t, reps, sizeof(float), bench_cmpf);
  return t[reps / 2];
}

#endif
