/* ceilings.cu: the rates every GPU figure is a fraction of, measured in the
 * same run (GPU.md, "What fast means"): the dense bf16 GEMM rate R at
 * 8192^3 (fp32 accumulate), the fp32 GEMM rate without TF32 (what the fp32
 * engine's GEMMs can reach), device copy bandwidth (bytes read plus written
 * per second) and pinned device-to-host bandwidth. Each is the median of
 * `reps` timed runs after a warm-up, timed with CUDA events. Prints one JSON
 * object; exit 77 without a device.
 *   ceilings [reps]                                                       */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define BENCH_NAME "ceilings"
#include "bench_gpu.h"

static __global__ void init_kernel(unsigned short *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) /* small random-ish bf16 values */
    x[i] = (unsigned short)(0x3c00 + ((i * 2654435761u) >> 20) % 512);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 10, n_dev = 0;
  reps = reps < 1 ? 1 : reps > 64 ? 64 : reps; /* median_ms's range */
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    printf("ceilings: skipped: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  cublasHandle_t h;
  CB(cublasCreate(&h));
  const int n = 8192;
  const size_t nn = (size_t)n * n;
  void *A, *B, *C;
  CK(cudaMalloc(&A, nn * 4));
  CK(cudaMalloc(&B, nn * 4));
  CK(cudaMalloc(&C, nn * 4));
  init_kernel<<<1024, 256>>>((unsigned short *)A, nn * 2);
  init_kernel<<<1024, 256>>>((unsigned short *)B, nn * 2);
  CK(cudaGetLastError());
  const float one = 1, zero = 0;
  /* bf16 inputs, fp32 accumulate and output */
  float bf = median_ms(reps, [&] {
    CB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, A, CUDA_R_16BF, n, B, CUDA_R_16BF,
                    n, &zero, C, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
  CB(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH)); /* fp32 as the engine runs it: no TF32 */
  float f32 = median_ms(reps, [&] {
    CB(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, (float *)A, n, (float *)B, n, &zero,
                   (float *)C, n));
  });
  const size_t bytes = nn * 4; /* 256 MiB */
  float copy = median_ms(reps, [&] { CK(cudaMemcpyAsync(C, A, bytes, cudaMemcpyDeviceToDevice)); });
  void *host;
  CK(cudaMallocHost(&host, bytes));
  float d2h = median_ms(reps, [&] { CK(cudaMemcpyAsync(host, A, bytes, cudaMemcpyDeviceToHost)); });
  const double flop = 2.0 * n * n * (double)n;
  printf("{\"device\": \"%s\", \"sm\": %d%d, \"bf16_gemm_tflops\": %.1f, "
         "\"fp32_gemm_tflops\": %.1f, \"copy_gbps\": %.0f, \"d2h_pinned_gbps\": %.1f, "
         "\"gemm_n\": %d, \"copy_bytes\": %zu, \"reps\": %d}\n",
         p.name, p.major, p.minor, flop / (bf * 1e-3) / 1e12, flop / (f32 * 1e-3) / 1e12,
         2.0 * bytes / (copy * 1e-3) / 1e9, bytes / (d2h * 1e-3) / 1e9, n, bytes, reps);
  CK(cudaFreeHost(host));
  CK(cudaFree(A));
  CK(cudaFree(B));
  CK(cudaFree(C));
  cublasDestroy(h);
  return 0;
}
