/* ops.h: the dense transformer ops, each a forward/backward pair: the CPU
 * backend's implementations (backend_cpu.c puts them in the op table that
 * the model calls, backend.h).
 *
 * Shapes use N = B*T rows (B sequences of T tokens, row n is position n % T
 * of sequence n / T). Backward functions ACCUMULATE into the gradients of
 * their inputs and parameters (+=); callers zero gradients once per step.
 * Ops that need temporary arrays take them from the caller's arena (arena.h). */
#ifndef SMOE_OPS_H
#define SMOE_OPS_H

#include "arena.h"
#include "common.h"

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; op = transpose if t*. */
void smoe_gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
               const real *B, int ldb, real beta, real *C, int ldc);

/* out (N, OC) = inp (N, C) W^T, W (OC, C): a Linear without bias. */
void smoe_matmul_forward(real *out, const real *inp, const real *w, int N, int C, int OC);
/* dinp += dout W; dw += dout^T inp. Either may be NULL to skip it. */
void smoe_matmul_backward(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                     int N, int C, int OC);

void smoe_embedding_forward(real *out, const int32_t *tokens, const real *table, int N, int D);
void smoe_embedding_backward(real *dtable, const real *dout, const int32_t *tokens, int N, int D,
                        int V);

/* out = w * x / sqrt(mean(x^2) + eps) per row; rstd (N) saved for backward. */
void smoe_rmsnorm_forward(real *out, real *rstd, const real *inp, const real *w, int N, int D,
                     double eps);
void smoe_rmsnorm_backward(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                      const real *rstd, int N, int D, smoe_arena_t *scratch);

/* RoPE tables: cos/sin (T, d/2) for positions 0..T-1, inv_freq = theta^(-2j/d). */
void smoe_rope_tables(real *cos_t, real *sin_t, int T, int d, double theta);
/* In place on x (N, nh*d), HF rotate-half convention; backward applies the
 * inverse rotation to the gradient in place. */
void smoe_rope_forward(real *x, const real *cos_t, const real *sin_t, int N, int T, int nh, int d);
void smoe_rope_backward(real *dx, const real *cos_t, const real *sin_t, int N, int T, int nh, int d);

/* Causal grouped-query attention. q (N, H*d), k/v (N, Hkv*d), out (N, H*d),
 * att (B, H, T, T) softmax probabilities (lower triangle) saved for backward. */
/* The query of one new position per head (q: H*d) against n cached
 * positions of k and v ((n, Hkv*d)): generation with a KV cache (no mask: the
 * cache holds only the past); att (H, n) gets the probabilities. */
void smoe_attention_decode(real *out, real *att, const real *q, const real *k, const real *v, int n,
                           int H, int Hkv, int d);
void smoe_attention_forward(real *out, real *att, const real *q, const real *k, const real *v, int B,
                       int T, int H, int Hkv, int d);
void smoe_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *att,
                        const real *q, const real *k, const real *v, int B, int T, int H, int Hkv,
                        int d, smoe_arena_t *scratch);

/* Softmax cross-entropy: logits (N, V) are replaced by probabilities; returns
 * the mean loss over rows with target >= 0 (count in *n_valid). */
double smoe_crossentropy_forward(real *logits, const int32_t *targets, int N, int V, int *n_valid,
                            smoe_arena_t *scratch);
/* dlogits = scale * (probs - onehot(target)), written (not accumulated);
 * rows with target < 0 get 0. dlogits may be probs. */
void smoe_crossentropy_backward(real *dlogits, const real *probs, const int32_t *targets, int N, int V,
                           real scale);
/* The two fused: returns the forward's loss (and *n_valid) and leaves
 * scale * (probs - onehot) in logits, the same bits as the two apart. */
double smoe_crossentropy(real *logits, const int32_t *targets, int N, int V, real scale,
                         int *n_valid, smoe_arena_t *scratch);

#endif
