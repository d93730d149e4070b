/* backend.h: the op table. Everything a training step does per token, per
 * row or per element goes through one of these function pointers, on
 * buffers the same backend allocated; what is decided from counts alone
 * (the plan, the split, the drop quotas, exchange offsets) stays on the host
 * and reaches the ops as E or G*S counts. The CPU's ops (ops.h, moe.h,
 * optim.h, placement.h and the row ops below) are the first backend and the
 * reference every other backend is tested against; a CUDA table will sit
 * beside it, chosen at run time.
 *
 * Pointers named in the comments as host arrays (counts, quotas, plans'
 * tables, statistics) are host memory on every backend; all others are
 * meant to be the backend's. Not yet so, to be moved with the CUDA table
 * (on the CPU all memory is one): the expert bias and the RoPE tables are
 * host allocations passed to ops, and host code writes some backend buffers
 * directly (the batch's tokens, weights from the initialiser or a file into
 * the slots, shards and dense parameters) and reads them (the final save). */
#ifndef SMOE_BACKEND_H
#define SMOE_BACKEND_H

#include "arena.h"
#include "common.h"
#include "optim.h"

typedef struct {
  const char *name;
  /* 1 when the host reads and writes the backend's memory directly (the
   * CPU): other code (comm.h) may then hand it to libraries as it is */
  int host_memory;

  /* memory: zeroed allocations (NULL never: out of memory ends the process) */
  void *(*alloc)(size_t bytes);
  void (*free)(void *p);
  void (*fill)(real *x, real v, size_t n);
  void (*copy)(real *dst, const real *src, size_t n);
  void (*add)(real *y, const real *x, size_t n); /* y += x */
  /* bytes between host memory and the backend's, in order with the ops
   * before them; both return when the copy is done */
  void (*to_device)(void *dst, const void *src, size_t bytes);
  void (*to_host)(void *dst, const void *src, size_t bytes);
  /* checkpoint staging (ckpt.c), off the step's path: host_pin makes host
   * memory quick to copy into (on = 0 undoes it); stage_copy queues a copy
   * of backend memory into host memory, after the ops before it, that is
   * complete once stage_wait returns (on any thread: the writer's); after
   * stage_fence (the step's, before its optimizer) ops that write a source
   * wait for the copies, on the device rather than on the host */
  void (*host_pin)(void *p, size_t bytes, int on);
  void (*stage_copy)(void *dst, const void *src, size_t bytes);
  void (*stage_wait)(void);
  void (*stage_fence)(void);

  /* dense layers (ops.h) */
  void (*gemm)(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
               const real *B, int ldb, real beta, real *C, int ldc);
  void (*matmul_forward)(real *out, const real *inp, const real *w, int N, int C, int OC);
  void (*matmul_backward)(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                          int N, int C, int OC);
  void (*embedding_forward)(real *out, const int32_t *tokens, const real *table, int N, int D);
  void (*embedding_backward)(real *dtable, const real *dout, const int32_t *tokens, int N, int D,
                             int V);
  void (*rmsnorm_forward)(real *out, real *rstd, const real *inp, const real *w, int N, int D,
                          double eps);
  void (*rmsnorm_backward)(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                           const real *rstd, int N, int D, smoe_arena_t *scratch);
  void (*rope_forward)(real *x, const real *cos_t, const real *sin_t, int N, int T, int nh, int d);
  void (*rope_backward)(real *dx, const real *cos_t, const real *sin_t, int N, int T, int nh,
                        int d);
  void (*attention_forward)(real *out, real *att, const real *q, const real *k, const real *v,
                            int B, int T, int H, int Hkv, int d);
  void (*attention_backward)(real *dq, real *dk, real *dv, const real *dout, const real *att,
                             const real *q, const real *k, const real *v, int B, int T, int H,
                             int Hkv, int d, smoe_arena_t *scratch);
  /* one new query per head (q: H*d) against n cached positions (k, v: (n,
   * Hkv*d)), no mask: generation with a KV cache; att (H, n) scratch */
  void (*attention_decode)(real *out, real *att, const real *q, const real *k, const real *v,
                           int n, int H, int Hkv, int d);
  /* ops.h's smoe_crossentropy: the loss and, in place of the logits, its
   * gradient (the probabilities never stored apart) */
  double (*crossentropy)(real *logits, const int32_t *targets, int N, int V, real scale,
                         int *n_valid, smoe_arena_t *scratch);

  /* the MoE block (moe.h): router, statistics (host outputs), combine */
  void (*router_forward)(real *probs, real *lse, int32_t *idx, real *gw, const real *bias, int N,
                         int E, int K);
  void (*router_stats)(int64_t *choice_counts, double *prob_sum, double *z_sum, const real *probs,
                       const real *lse, const int32_t *idx, int N, int E, int K);
  void (*router_backward)(real *dlogits, const real *probs, const real *lse, const int32_t *idx,
                          const real *gw, const real *dgw, const real *aux_dp, real z_scale, int N,
                          int E, int K);
  void (*moe_gather)(real *xe, const real *x, const int *pos, int N, int K, int D);
  void (*moe_gather_backward)(real *dx, const real *dxe, const int *pos, int N, int K, int D);
  void (*moe_combine)(real *out, const real *ye, const real *gw, const int *pos, int N, int K,
                      int D);
  void (*moe_combine_backward)(real *dye, real *dgw, const real *dout, const real *ye,
                               const real *gw, const int *pos, int N, int K, int D);
  void (*experts_forward)(real *ye, real *h13, real *act, const real *xe, const real *experts,
                          const int *offsets, int E, int D, int F);
  void (*experts_backward)(real *dxe, real *dexperts, real *dh13, real *dact, const real *dye,
                           const real *xe, const real *h13, const real *act, const real *experts,
                           const int *offsets, int E, int D, int F);

  /* routing rows (dispatch.h): counts[i] (host, n_bins) = how many of x (n) equal i */
  void (*histogram)(int64_t *counts, const int32_t *x, int n, int n_bins);
  /* keep (N*K) under each expert's capacity (host, E): placement.h's smoe_capacity_keep */
  int64_t (*capacity_keep)(uint8_t *keep, const int32_t *idx, const real *gw, int N, int K, int E,
                           const int64_t *capacity, int by_weight, smoe_arena_t *scratch);
  /* slot_of[a] = slot_of_expert[idx[a]] (host, E), or -1 where keep (may be NULL) is 0 */
  void (*route_slots)(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                      const int *slot_of_expert, int E, int NK);
  /* the load-aware split: assignment a of expert e takes the next of e's
   * slots (host: first (E+1), slots) with quota left (host quota (G*S),
   * consumed in assignment order); -1 where keep is 0. Returns -1 when an
   * expert's quotas run out (the split did not cover its tokens), else 0 */
  int (*split_slots)(int32_t *slot_of, const int32_t *idx, const uint8_t *keep, const int *first,
                     const int *slots, int64_t *quota, int E, int NK, smoe_arena_t *scratch);
  /* pos[a] = the send-order row of assignment a: start[slot_of[a]] (host,
   * n_slots) plus the assignments of that slot before a; -1 where slot_of is */
  void (*positions)(int *pos, const int32_t *slot_of, const int64_t *start, int NK, int n_slots,
                    smoe_arena_t *scratch);
  /* out[map[i]] = in[i] (scatter = 1) or out[i] = in[map[i]] (scatter = 0): rows of D */
  void (*permute_rows)(real *out, const real *in, const int *map, int64_t rows, int D, int scatter);

  /* optimizer (optim.h) */
  void (*adamw)(real *p, const real *g, real *m, real *v, size_t n, const smoe_adamw_t *o,
                int64_t t);
  double (*sumsq)(const real *x, size_t n);
  void (*scale)(real *x, size_t n, real s);
} smoe_ops_t;

/* The CPU backend (OpenBLAS GEMMs, OpenMP loops). */
extern const smoe_ops_t smoe_ops_cpu;
/* The CPU's ops on memory the host cannot touch between ops (backend_guard.c). */
extern const smoe_ops_t smoe_ops_guard;
#ifdef SMOE_WITH_CUDA
/* The CUDA backend (cuda/): kernels and cuBLAS on one stream. */
extern const smoe_ops_t smoe_ops_cuda;
#endif

/* The table of training.device ("cpu", "cuda" or "guard") for this rank,
 * with GEMM operands of training.dtype ("fp32", or "bf16" on cuda), which
 * becomes comm's data-plane backend too. cuda: the GPU of this rank's place
 * on its node (modulo the node's GPUs), and a CUDA error then aborts the
 * job; an error names the rank and why when CUDA is missing. */
typedef struct smoe_comm smoe_comm_t;
int smoe_backend_open(const char *device, const char *dtype, smoe_comm_t *comm,
                      const smoe_ops_t **ops, smoe_err_t *err);
/* One line on where ops runs (the GPU's name and memory), for the run's header. */
void smoe_backend_describe(const smoe_ops_t *ops, char *out, size_t len);

#endif
