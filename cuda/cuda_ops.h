/* cuda_ops.h: the CUDA backend's C interface. Each smoe_cuda_<op> has the
 * signature of the op table's <op> (backend.h) and the semantics of its CPU
 * reference; backend_cuda.c puts them in smoe_ops_cuda. Buffers are device
 * memory from smoe_cuda_alloc except the arrays backend.h names as host
 * (counts, quotas, capacities, plans' tables, statistics, and `offsets` of
 * the expert MLPs); the arena arguments are unused (kernels take device
 * scratch, cuda_common.h). All ops run in order on one stream; an op that
 * returns a host value waits for it. A CUDA error ends the process through
 * the fatal hook, naming the call. */
#ifndef SMOE_CUDA_OPS_H
#define SMOE_CUDA_OPS_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when CUDA device `device` modulo the device count can be used (and is
 * now selected: ranks beyond the count share devices), else 0 with the
 * reason in why (why_len bytes): the skip path of the GPU tests, and the
 * engine's check of training.device = cuda. */
int smoe_cuda_available(int device, char *why, size_t why_len);
/* What a fatal CUDA error calls after printing it (the engine aborts the
 * job naming the rank); NULL restores exit(1). */
void smoe_cuda_set_fatal_hook(void (*hook)(const char *msg));
/* the device's name and memory, for the run's header */
void smoe_cuda_describe(char *out, size_t len);

/* training.dtype = bf16 (1) or fp32 (0): the operands of every GEMM but
 * attention's rounded to bf16 (round to nearest even), fp32 accumulation
 * and output; masters, moments, gradients, activations stay fp32. Only in
 * the float build. */
void smoe_cuda_set_bf16(int on);

void *smoe_cuda_alloc(size_t bytes); /* zeroed */
void smoe_cuda_free(void *p);
void smoe_cuda_to_device(void *dst, const void *src, size_t bytes);
void smoe_cuda_to_host(void *dst, const void *src, size_t bytes);
void smoe_cuda_sync(void);
/* checkpoint staging (backend.h): page-locked host memory; copies to the
 * host on a side stream after the ops queued before them; a host wait for
 * them (any thread); the compute stream waiting for them (on the device) */
void smoe_cuda_host_pin(void *p, size_t bytes, int on);
void smoe_cuda_stage_copy(void *dst, const void *src, size_t bytes);
void smoe_cuda_stage_wait(void);
void smoe_cuda_stage_fence(void);
/* for comm's NCCL data plane: the stream every op runs on (a cudaStream_t),
 * a device-to-device copy queued on it, and the fatal path (exit through
 * the hook) after an error was printed */
void *smoe_cuda_stream_handle(void);
void smoe_cuda_copy_bytes(void *dst, const void *src, size_t bytes);
void smoe_cuda_fatal_exit(void);

/* memory and flat buffers (cuda_ops.cu) */
void smoe_cuda_fill(real *x, real v, size_t n);
void smoe_cuda_copy(real *dst, const real *src, size_t n);
void smoe_cuda_add(real *y, const real *x, size_t n);
void smoe_cuda_scale(real *x, size_t n, real s);
void smoe_cuda_adamw(real *p, const real *g, real *m, real *v, size_t n, const smoe_adamw_t *o,
                     int64_t t);
double smoe_cuda_sumsq(const real *x, size_t n);
void smoe_cuda_permute_rows(real *out, const real *in, const int *map, int64_t rows, int D,
                            int scatter);

/* dense layers (ops_dense.cu) */
void smoe_cuda_gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
                    const real *B, int ldb, real beta, real *C, int ldc);
void smoe_cuda_matmul_forward(real *out, const real *inp, const real *w, int N, int C, int OC);
void smoe_cuda_matmul_backward(real *dinp, real *dw, const real *dout, const real *inp,
                               const real *w, int N, int C, int OC);
void smoe_cuda_embedding_forward(real *out, const int32_t *tokens, const real *table, int N, int D);
void smoe_cuda_embedding_backward(real *dtable, const real *dout, const int32_t *tokens, int N,
                                  int D, int V);
void smoe_cuda_rmsnorm_forward(real *out, real *rstd, const real *inp, const real *w, int N, int D,
                               double eps);
void smoe_cuda_rmsnorm_backward(real *dinp, real *dw, const real *dout, const real *inp,
                                const real *w, const real *rstd, int N, int D,
                                smoe_arena_t *scratch);
void smoe_cuda_rope_forward(real *x, const real *cos_t, const real *sin_t, int N, int T, int nh,
                            int d);
void smoe_cuda_rope_backward(real *dx, const real *cos_t, const real *sin_t, int N, int T, int nh,
                             int d);
void smoe_cuda_attention_decode(real *out, real *att, const real *q, const real *k, const real *v,
                                int n, int H, int Hkv, int d);
void smoe_cuda_attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                                 int B, int T, int H, int Hkv, int d);
void smoe_cuda_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *att,
                                  const real *q, const real *k, const real *v, int B, int T, int H,
                                  int Hkv, int d, smoe_arena_t *scratch);
double smoe_cuda_crossentropy_forward(real *logits, const int32_t *targets, int N, int V,
                                      int *n_valid, smoe_arena_t *scratch);
void smoe_cuda_crossentropy_backward(real *dlogits, const real *probs, const int32_t *targets,
                                     int N, int V, real scale);
double smoe_cuda_crossentropy(real *logits, const int32_t *targets, int N, int V, real scale,
                              int *n_valid, smoe_arena_t *scratch);

/* the MoE block and routing rows (ops_moe.cu) */
void smoe_cuda_router_forward(real *probs, real *lse, int32_t *idx, real *gw, const real *bias,
                              int N, int E, int K);
void smoe_cuda_router_stats(int64_t *choice_counts, double *prob_sum, double *z_sum,
                            const real *probs, const real *lse, const int32_t *idx, int N, int E,
                            int K);
void smoe_cuda_router_backward(real *dlogits, const real *probs, const real *lse,
                               const int32_t *idx, const real *gw, const real *dgw,
                               const real *aux_dp, real z_scale, int N, int E, int K);
void smoe_cuda_moe_gather(real *xe, const real *x, const int *pos, int N, int K, int D);
void smoe_cuda_moe_gather_backward(real *dx, const real *dxe, const int *pos, int N, int K, int D);
void smoe_cuda_moe_combine(real *out, const real *ye, const real *gw, const int *pos, int N, int K,
                           int D);
void smoe_cuda_moe_combine_backward(real *dye, real *dgw, const real *dout, const real *ye,
                                    const real *gw, const int *pos, int N, int K, int D);
void smoe_cuda_experts_forward(real *ye, real *h13, real *act, const real *xe, const real *experts,
                               const int *offsets, int E, int D, int F);
void smoe_cuda_experts_backward(real *dxe, real *dexperts, real *dh13, real *dact, const real *dye,
                                const real *xe, const real *h13, const real *act,
                                const real *experts, const int *offsets, int E, int D, int F);
void smoe_cuda_histogram(int64_t *counts, const int32_t *x, int n, int n_bins);
int64_t smoe_cuda_capacity_keep(uint8_t *keep, const int32_t *idx, const real *gw, int N, int K,
                                int E, const int64_t *capacity, int by_weight,
                                smoe_arena_t *scratch);
void smoe_cuda_route_slots(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                           const int *slot_of_expert, int E, int NK);
int smoe_cuda_split_slots(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                          const int *first, const int *slots, int64_t *quota, int E, int NK,
                          smoe_arena_t *scratch);
void smoe_cuda_positions(int *pos, const int32_t *slot_of, const int64_t *start, int NK,
                         int n_slots, smoe_arena_t *scratch);

#ifdef __cplusplus
}
#endif

#endif
