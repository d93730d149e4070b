/* cuda_common.h: what every kernel file of cuda/ shares (C++ only, never
 * included by the C engine): the one stream all ops run on in order, the
 * cuBLAS handle bound to it, grow-only device scratch, the fatal-error path,
 * and the launch helpers. The engine's scalar type `real` comes from
 * common.h, so the same files build the fp32 and the fp64 (test) backends. */
#ifndef SMOE_CUDA_COMMON_H
#define SMOE_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common.h"

/* A CUDA or cuBLAS failure inside a step cannot be undone: it names the call,
 * the error and the place, then ends the process through the hook the
 * engine set (smoe_cuda_set_fatal_hook; by default exit(1)). */
[[noreturn]] void smoe_cuda_fatal(const char *call, const char *why, const char *file, int line);
#define CU(call)                                                                     \
  do {                                                                               \
    cudaError_t e_ = (call);                                                         \
    if (e_ != cudaSuccess) smoe_cuda_fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
  } while (0)
#define CUBLAS(call)                                                                     \
  do {                                                                                   \
    cublasStatus_t s_ = (call);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
      smoe_cuda_fatal(#call, cublasGetStatusString(s_), __FILE__, __LINE__);             \
  } while (0)
/* after every kernel launch; with SMOE_CUDA_SYNC=1 in the environment it
 * also waits for the kernel, so that a fault is named at its launch (slow:
 * for finding one) */
extern int smoe_cuda_debug_sync;
#define LAUNCHED()                                                            \
  do {                                                                        \
    CU(cudaGetLastError());                                                   \
    if (smoe_cuda_debug_sync > 0) CU(cudaStreamSynchronize(smoe_cuda_stream())); \
  } while (0)

/* The stream every op of the table runs on, in issue order, and the cuBLAS
 * handle bound to it (fixed workspace, no TF32: the same bits every run). */
cudaStream_t smoe_cuda_stream(void);
cublasHandle_t smoe_cuda_blas(void);

/* Device scratch buffer number `which` (0 .. SMOE_CUDA_SCRATCH - 1) of at
 * least `bytes`, contents undefined. It only grows (in the first step, as the
 * host arenas do); an op uses distinct numbers for buffers it needs at once.
 * Valid until the next call with the same number. */
enum { SMOE_CUDA_SCRATCH = 6 }; /* 4 and 5: the bf16 GEMM operands (device.cu) */
void *smoe_cuda_scratch(int which, size_t bytes);
/* The same for pinned host memory (results an op copies back). */
void *smoe_cuda_pinned(int which, size_t bytes);

/* Host arrays into device scratch `which` (the host array may be reused on
 * return: it waits for the copy), and device results back to the host
 * (waits for the stream). */
void *smoe_cuda_upload(int which, const void *host, size_t bytes);
void smoe_cuda_download(void *host, const void *dev, size_t bytes);

/* Row-major C (M,N) = alpha op(A) op(B) + beta C on the stream (cuBLAS,
 * column-major underneath), in `real`; with bf16 operands
 * (smoe_cuda_set_bf16) A and B are rounded to bf16 first (device scratch 4
 * and 5) and multiplied with fp32 accumulation into the fp32 C. */
void smoe_cuda_gemm_rm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
                       const real *B, int ldb, real beta, real *C, int ldc);

/* grid-stride loops: any n with any grid */
#define FOR_EACH(i, n)                                                    \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)
enum { SMOE_THREADS = 256 };
static inline unsigned smoe_blocks(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 65535 * 32 ? (b ? b : 1) : 65535 * 32);
}
/* launch kernel over n work items (nothing when n is 0), then check */
#define LAUNCH(kernel, n, ...)                                                         \
  do {                                                                                 \
    size_t n_ = (n);                                                                   \
    if (n_) {                                                                          \
      kernel<<<smoe_blocks(n_, SMOE_THREADS), SMOE_THREADS, 0, smoe_cuda_stream()>>>(__VA_ARGS__); \
      LAUNCHED();                                                                      \
    }                                                                                  \
  } while (0)

#endif
