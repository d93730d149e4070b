/* device.cu: the device, its stream and cuBLAS handle, memory, scratch and
 * the fatal-error path (cuda_common.h, cuda_ops.h). */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_common.h"
#include "cuda_ops.h"

static void (*fatal_hook)(const char *msg);

extern "C" void smoe_cuda_set_fatal_hook(void (*hook)(const char *msg)) {
  fatal_hook = hook;
}

void smoe_cuda_fatal(const char *call, const char *why, const char *file, int line) {
  char msg[512];
  snprintf(msg, sizeof msg, "CUDA error: %s failed: %s (%s:%d)", call, why, file, line);
  fprintf(stderr, "swiftmoe: %s\n", msg);
  if (fatal_hook) fatal_hook(msg);
  exit(1);
}

static int the_device; /* this process's GPU (smoe_cuda_available) */
int smoe_cuda_debug_sync = -1; /* SMOE_CUDA_SYNC=1: wait after each launch */

extern "C" int smoe_cuda_available(int device, char *why, size_t why_len) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    snprintf(why, why_len, "no CUDA device: %s",
             e != cudaSuccess ? cudaGetErrorString(e) : "the driver lists none");
    return 0;
  }
  device = device < 0 ? 0 : device % n; /* ranks beyond the count share devices */
  the_device = device;
  smoe_cuda_debug_sync = getenv("SMOE_CUDA_SYNC") && atoi(getenv("SMOE_CUDA_SYNC")) > 0;
  e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaFree(0); /* creates the context now */
  if (e != cudaSuccess) {
    snprintf(why, why_len, "CUDA device %d unusable: %s", device, cudaGetErrorString(e));
    return 0;
  }
  return 1;
}

extern "C" void smoe_cuda_describe(char *out, size_t len) {
  int dev = 0;
  cudaDeviceProp p;
  size_t free_b = 0, total_b = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess ||
      cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    snprintf(out, len, "CUDA device (properties unavailable)");
    return;
  }
  snprintf(out, len, "CUDA device %d: %s, sm_%d%d, %.1f GiB (%.1f GiB free)", dev, p.name, p.major,
           p.minor, total_b / 1073741824.0, free_b / 1073741824.0);
}

static cudaStream_t stream;
static cublasHandle_t blas;

cudaStream_t smoe_cuda_stream(void) {
  if (!stream) CU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

cublasHandle_t smoe_cuda_blas(void) {
  if (blas) return blas;
  CUBLAS(cublasCreate(&blas));
  CUBLAS(cublasSetStream(blas, smoe_cuda_stream()));
  /* default math: fp32 GEMMs in fp32 (TF32 only when asked for, which we
   * never do), tensor cores for bf16 operands; with one handle on one stream
   * and a fixed workspace cuBLAS gives the same bits every run */
  CUBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
  static void *workspace;
  const size_t ws = (size_t)32 << 20;
  CU(cudaMalloc(&workspace, ws));
  CUBLAS(cublasSetWorkspace(blas, workspace, ws));
  return blas;
}

static void *scratch[SMOE_CUDA_SCRATCH], *pinned[SMOE_CUDA_SCRATCH];
static size_t scratch_len[SMOE_CUDA_SCRATCH], pinned_len[SMOE_CUDA_SCRATCH];

static size_t grown(size_t have, size_t want) {
  size_t n = have ? have : 4096;
  while (n < want) n *= 2;
  return n;
}

void *smoe_cuda_scratch(int which, size_t bytes) {
  if (bytes > scratch_len[which]) {
    CU(cudaStreamSynchronize(smoe_cuda_stream())); /* a queued op may still use it */
    CU(cudaFree(scratch[which]));
    scratch_len[which] = grown(scratch_len[which], bytes);
    CU(cudaMalloc(&scratch[which], scratch_len[which]));
  }
  return scratch[which];
}

void *smoe_cuda_pinned(int which, size_t bytes) {
  if (bytes > pinned_len[which]) {
    CU(cudaStreamSynchronize(smoe_cuda_stream()));
    CU(cudaFreeHost(pinned[which]));
    pinned_len[which] = grown(pinned_len[which], bytes);
    CU(cudaMallocHost(&pinned[which], pinned_len[which]));
  }
  return pinned[which];
}

void *smoe_cuda_upload(int which, const void *host, size_t bytes) {
  void *d = smoe_cuda_scratch(which, bytes);
  if (!bytes) return d;
  CU(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, smoe_cuda_stream()));
  /* the caller may change the host array on return: CUDA only says a copy
   * from pageable memory "might be synchronous", so wait (small arrays of
   * counts, next to a download of counts anyway) */
  CU(cudaStreamSynchronize(smoe_cuda_stream()));
  return d;
}

void smoe_cuda_download(void *host, const void *dev, size_t bytes) {
  if (bytes) CU(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, smoe_cuda_stream()));
  CU(cudaStreamSynchronize(smoe_cuda_stream()));
}

extern "C" void *smoe_cuda_alloc(size_t bytes) {
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    char why[160];
    snprintf(why, sizeof why, "%s, allocating %zu bytes", cudaGetErrorString(e), bytes);
    smoe_cuda_fatal("cudaMalloc", why, __FILE__, __LINE__);
  }
  CU(cudaMemsetAsync(p, 0, bytes ? bytes : 1, smoe_cuda_stream()));
  return p;
}

extern "C" void smoe_cuda_free(void *p) {
  if (!p) return;
  CU(cudaStreamSynchronize(smoe_cuda_stream()));
  CU(cudaFree(p));
}

extern "C" void smoe_cuda_to_device(void *dst, const void *src, size_t bytes) {
  if (bytes) CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, smoe_cuda_stream()));
  CU(cudaStreamSynchronize(smoe_cuda_stream()));
}

extern "C" void smoe_cuda_to_host(void *dst, const void *src, size_t bytes) {
  smoe_cuda_download(dst, src, bytes);
}

extern "C" void *smoe_cuda_stream_handle(void) {
  return (void *)smoe_cuda_stream();
}

extern "C" void smoe_cuda_copy_bytes(void *dst, const void *src, size_t bytes) {
  if (bytes)
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, smoe_cuda_stream()));
}

extern "C" void smoe_cuda_fatal_exit(void) {
  if (fatal_hook) fatal_hook("NCCL error");
  exit(1);
}

extern "C" void smoe_cuda_host_pin(void *p, size_t bytes, int on) {
  if (on)
    CU(cudaHostRegister(p, bytes, cudaHostRegisterDefault));
  else
    CU(cudaHostUnregister(p));
}

/* the side stream of staging copies and its two events: `ready` (the
 * compute stream reached the copies) and `copied` (they are done) */
static cudaStream_t side;
static cudaEvent_t ready, copied;
static int copies_pending; /* queued since the last fence (main thread only) */

extern "C" void smoe_cuda_stage_copy(void *dst, const void *src, size_t bytes) {
  if (!side) {
    CU(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    CU(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CU(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
  }
  if (!copies_pending) { /* after everything queued so far on the compute stream */
    CU(cudaEventRecord(ready, smoe_cuda_stream()));
    CU(cudaStreamWaitEvent(side, ready, 0));
  }
  if (bytes) CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, side));
  CU(cudaEventRecord(copied, side));
  copies_pending = 1;
}

extern "C" void smoe_cuda_stage_wait(void) {
  if (!side) return;
  CU(cudaSetDevice(the_device)); /* the writer's thread: no context on another GPU */
  CU(cudaEventSynchronize(copied));
}

extern "C" void smoe_cuda_stage_fence(void) {
  if (!copies_pending) return;
  CU(cudaStreamWaitEvent(smoe_cuda_stream(), copied, 0));
  copies_pending = 0;
}

extern "C" void smoe_cuda_sync(void) {
  CU(cudaStreamSynchronize(smoe_cuda_stream()));
}

#ifdef SMOE_REAL_DOUBLE /* the double build never runs bf16 (the engine refuses it) */
extern "C" void smoe_cuda_set_bf16(int on) {
  (void)on;
}
#else
static int bf16;

extern "C" void smoe_cuda_set_bf16(int on) {
  bf16 = on;
}

static __global__ void bf16_kernel(uint16_t *out, const float *in, size_t n) {
  FOR_EACH(i, n) out[i] = smoe_bf16_bits(in[i]);
}

/* a row-major rows x cols matrix of leading dimension ld, rounded to bf16
 * into scratch `which` with the same leading dimension */
static const void *as_bf16(int which, const real *x, int rows, int cols, int ld) {
  const size_t n = (size_t)(rows - 1) * ld + cols;
  uint16_t *b = (uint16_t *)smoe_cuda_scratch(which, n * sizeof(uint16_t));
  LAUNCH(bf16_kernel, n, b, x, n);
  return b;
}
#endif

void smoe_cuda_gemm_rm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
                       const real *B, int ldb, real beta, real *C, int ldc) {
  if (M == 0 || N == 0) return;
  /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T */
  const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
#ifndef SMOE_REAL_DOUBLE
  if (bf16 && K > 0) {
    const float fa = (float)alpha, fb = (float)beta;
    const void *a16 = as_bf16(4, A, ta ? K : M, ta ? M : K, lda);
    const void *b16 = as_bf16(5, B, tb ? N : K, tb ? K : N, ldb);
    CUBLAS(cublasGemmEx(smoe_cuda_blas(), ob, oa, N, M, K, &fa, b16, CUDA_R_16BF, ldb, a16,
                        CUDA_R_16BF, lda, &fb, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
    return;
  }
#endif
#ifdef SMOE_REAL_DOUBLE
  CUBLAS(cublasDgemm(smoe_cuda_blas(), ob, oa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
#else
  CUBLAS(cublasSgemm(smoe_cuda_blas(), ob, oa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
#endif
}
