/* cuda_ops.h: the CUDA kernels' C interface (extern "C" launchers, float).
 * The first of the op table's CUDA backend (backend.h): the flat-buffer
 * ops of the optimizer, the fills and copies, SwiGLU and the MoE block's
 * row moves (gather, combine, permute), each beside its CPU
 * reference (optim.h, backend_cpu.c) and compared with it bit for bit by
 * tests/test_cuda_ops.c. Every function returns 0, or -1 with the CUDA
 * error's text in err (no device, out of memory, a failed launch). Buffers
 * are device memory from smoe_cuda_alloc. */
#ifndef SMOE_CUDA_OPS_H
#define SMOE_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when a CUDA device can be used (device 0 selected), else 0 with the
 * reason in why (why_len bytes): the skip path of the GPU tests. */
int smoe_cuda_available(char *why, size_t why_len);

int smoe_cuda_alloc(void **p, size_t bytes, char *err, size_t err_len); /* zeroed */
void smoe_cuda_free(void *p);
int smoe_cuda_to_device(void *dst, const void *src, size_t bytes, char *err, size_t err_len);
int smoe_cuda_to_host(void *dst, const void *src, size_t bytes, char *err, size_t err_len);

int smoe_cuda_fill(float *x, float v, size_t n, char *err, size_t err_len);
int smoe_cuda_add(float *y, const float *x, size_t n, char *err, size_t err_len);
int smoe_cuda_scale(float *x, size_t n, float s, char *err, size_t err_len);
/* optim.h's smoe_adamw_step on device buffers (the same element, elem.h) */
int smoe_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, int64_t t, char *err,
                    size_t err_len);
/* moe.h's SwiGLU on rows of h13 = [h1 | h3] (rows, 2F): act (rows, F) =
 * silu(h1) h3; backward: dh13 (rows, 2F) from dact (rows, F), written */
int smoe_cuda_swiglu(float *act, const float *h13, int64_t rows, int F, char *err, size_t err_len);
int smoe_cuda_swiglu_backward(float *dh13, const float *dact, const float *h13, int64_t rows, int F,
                              char *err, size_t err_len);
/* moe.h's row moves of the MoE block, on this rank's N tokens and K choices
 * (pos (N*K) send-order rows, -1 = dropped; gw (N, K) gate weights), each
 * element in the CPU's order: smoe_moe_gather, _gather_backward (dx +=),
 * smoe_moe_combine (out +=), _combine_backward (dye and dgw written) */
int smoe_cuda_moe_gather(float *xe, const float *x, const int *pos, int N, int K, int D, char *err,
                         size_t err_len);
int smoe_cuda_moe_gather_backward(float *dx, const float *dxe, const int *pos, int N, int K, int D,
                                  char *err, size_t err_len);
int smoe_cuda_moe_combine(float *out, const float *ye, const float *gw, const int *pos, int N,
                          int K, int D, char *err, size_t err_len);
int smoe_cuda_moe_combine_backward(float *dye, float *dgw, const float *dout, const float *ye,
                                   const float *gw, const int *pos, int N, int K, int D, char *err,
                                   size_t err_len);
/* backend.h's permute_rows: out[map[i]] = in[i] (scatter) or out[i] = in[map[i]] */
int smoe_cuda_permute_rows(float *out, const float *in, const int *map, int64_t rows, int D,
                           int scatter, char *err, size_t err_len);
/* optim.h's smoe_sumsq: the same fixed blocks of 4096, each summed in order
 * in double, then the blocks in order: the same bits as the CPU's */
int smoe_cuda_sumsq(const float *x, size_t n, double *out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
