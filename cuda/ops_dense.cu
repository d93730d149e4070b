/* ops_dense.cu: the dense transformer ops on the GPU (cuda_ops.h), with
 * the semantics of their CPU references (ops.h). Compiled with --fmad=false:
 * the row and element math shared with ops.c (rows.h) rounds as on the CPU.
 *
 * Which results equal the CPU's bit for bit: embedding forward and
 * backward, RMSNorm forward and backward (dw: when the CPU runs
 * smoe_rmsnorm_dw_blocks OpenMP threads), RoPE, the cross-entropy's
 * probabilities (float; in double the exp may differ by an ulp) and its
 * backward. The GEMMs (matmul, attention) are cuBLAS's sums, not
 * OpenBLAS's: close, not equal; the attention's softmax rows are summed by
 * a warp. Everything is deterministic: no atomics, fixed orders, one cuBLAS
 * handle on one stream in default math (fp32 stays fp32: no TF32). */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"
#include "cuda_ops.h"
#include "rows.h"

/* ---- GEMMs ---- */

extern "C" void smoe_cuda_gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A,
                               int lda, const real *B, int ldb, real beta, real *C, int ldc) {
  smoe_cuda_gemm_rm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Row-major strided-batched GEMM: for i < count, C_i (M,N) = alpha op(A_i)
 * op(B_i) + beta C_i, with X_i = X + i * sX. As smoe_cuda_gemm_rm: the
 * column-major C^T = op(B)^T op(A)^T. */
static void gemm_batched(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda,
                         long long sA, const real *B, int ldb, long long sB, real beta, real *C,
                         int ldc, long long sC, int count) {
  if (M == 0 || N == 0 || count == 0) return;
  const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
#ifdef SMOE_REAL_DOUBLE
  CUBLAS(cublasDgemmStridedBatched(smoe_cuda_blas(), ob, oa, N, M, K, &alpha, B, ldb, sB, A, lda,
                                   sA, &beta, C, ldc, sC, count));
#else
  CUBLAS(cublasSgemmStridedBatched(smoe_cuda_blas(), ob, oa, N, M, K, &alpha, B, ldb, sB, A, lda,
                                   sA, &beta, C, ldc, sC, count));
#endif
}

extern "C" void smoe_cuda_matmul_forward(real *out, const real *inp, const real *w, int N, int C,
                                         int OC) {
  smoe_cuda_gemm_rm(0, 1, N, OC, C, 1, inp, C, w, C, 0, out, OC);
}

extern "C" void smoe_cuda_matmul_backward(real *dinp, real *dw, const real *dout, const real *inp,
                                          const real *w, int N, int C, int OC) {
  if (dinp) smoe_cuda_gemm_rm(0, 0, N, C, OC, 1, dout, OC, w, C, 1, dinp, C);
  if (dw) smoe_cuda_gemm_rm(1, 0, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
}

/* ---- embedding ---- */

/* one thread per element of out (N, D) */
static __global__ void embedding_forward_kernel(real *out, const int32_t *tokens, const real *table,
                                                int N, int D) {
  FOR_EACH(j, (size_t)N * D) {
    size_t n = j / D, i = j % D;
    out[j] = table[(size_t)tokens[n] * D + i];
  }
}

extern "C" void smoe_cuda_embedding_forward(real *out, const int32_t *tokens, const real *table,
                                            int N, int D) {
  LAUNCH(embedding_forward_kernel, (size_t)N * D, out, tokens, table, N, D);
}

/* Work item (r, i): column i of the table rows of token ids in range r,
 * [V r / R, V (r+1) / R). Each item walks all N rows in order and adds the
 * rows whose token is in its range: every (id, column) sum runs in row
 * order as on the CPU (the same bits), and no two items share an output. */
static __global__ void embedding_backward_kernel(real *dtable, const real *dout,
                                                 const int32_t *tokens, int N, int D, int V,
                                                 int R) {
  FOR_EACH(j, (size_t)R * D) {
    size_t i = j % D;
    int64_t r = (int64_t)(j / D), lo = V * r / R, hi = V * (r + 1) / R;
    for (int n = 0; n < N; n++) {
      int64_t t = tokens[n];
      if (t >= lo && t < hi) dtable[t * D + i] += dout[(size_t)n * D + i];
    }
  }
}

extern "C" void smoe_cuda_embedding_backward(real *dtable, const real *dout, const int32_t *tokens,
                                             int N, int D, int V) {
  if (N <= 0 || D <= 0 || V <= 0) return;
  /* about 64k work items, at most one id per range */
  int R = 65536 / D;
  R = R < 1 ? 1 : (R > V ? V : R);
  LAUNCH(embedding_backward_kernel, (size_t)R * D, dtable, dout, tokens, N, D, V, R);
}

/* ---- RMSNorm ---- */

/* one thread per row: the statistics in the CPU's order (rows.h) */
static __global__ void rmsnorm_rstd_kernel(real *rstd, const real *inp, int N, int D, double eps) {
  FOR_EACH(n, (size_t)N) rstd[n] = smoe_rmsnorm_rstd(inp + n * D, D, eps);
}

/* one thread per element */
static __global__ void rmsnorm_y_kernel(real *out, const real *inp, const real *w, const real *rstd,
                                        int N, int D) {
  FOR_EACH(j, (size_t)N * D) out[j] = smoe_rmsnorm_y(w[j % D], inp[j], rstd[j / D]);
}

extern "C" void smoe_cuda_rmsnorm_forward(real *out, real *rstd, const real *inp, const real *w,
                                          int N, int D, double eps) {
  if (N <= 0 || D <= 0) return;
  LAUNCH(rmsnorm_rstd_kernel, (size_t)N, rstd, inp, N, D, eps);
  LAUNCH(rmsnorm_y_kernel, (size_t)N * D, out, inp, w, rstd, N, D);
}

/* one thread per row: c = r^3 / D sum_j w_j dy_j x_j */
static __global__ void rmsnorm_dcoef_kernel(real *c, const real *dout, const real *inp,
                                            const real *w, const real *rstd, int N, int D) {
  FOR_EACH(n, (size_t)N) c[n] = smoe_rmsnorm_dcoef(inp + n * D, dout + n * D, w, rstd[n], D);
}

/* one thread per element: dx += r w dy - c x */
static __global__ void rmsnorm_dx_kernel(real *dinp, const real *dout, const real *inp,
                                         const real *w, const real *rstd, const real *c, int N,
                                         int D) {
  FOR_EACH(j, (size_t)N * D) {
    size_t n = j / D;
    dinp[j] += smoe_rmsnorm_dx(rstd[n], w[j % D], dout[j], c[n], inp[j]);
  }
}

/* Work item (b, i): column i of row block b (the CPU's thread b of nb),
 * summed in double in row order into part (nb, D). */
static __global__ void rmsnorm_dw_part_kernel(double *part, const real *dout, const real *inp,
                                              const real *rstd, int N, int D, int nb) {
  FOR_EACH(j, (size_t)nb * D) {
    size_t i = j % D;
    int64_t b = (int64_t)(j / D);
    int lo = (int)(N * b / nb), hi = (int)(N * (b + 1) / nb);
    double a = 0;
    for (int n = lo; n < hi; n++) {
      size_t at = (size_t)n * D + i;
      a += smoe_rmsnorm_dw_term(dout[at], inp[at], rstd[n]);
    }
    part[j] = a;
  }
}

/* one thread per column: the blocks' sums added to dw in block order */
static __global__ void rmsnorm_dw_kernel(real *dw, const double *part, int D, int nb) {
  FOR_EACH(i, (size_t)D) {
    for (int b = 0; b < nb; b++) dw[i] += (real)part[(size_t)b * D + i];
  }
}

extern "C" void smoe_cuda_rmsnorm_backward(real *dinp, real *dw, const real *dout, const real *inp,
                                           const real *w, const real *rstd, int N, int D,
                                           smoe_arena_t *scratch) {
  (void)scratch;
  if (N <= 0 || D <= 0) return;
  if (dinp) {
    real *c = (real *)smoe_cuda_scratch(0, sizeof(real) * (size_t)N);
    LAUNCH(rmsnorm_dcoef_kernel, (size_t)N, c, dout, inp, w, rstd, N, D);
    LAUNCH(rmsnorm_dx_kernel, (size_t)N * D, dinp, dout, inp, w, rstd, c, N, D);
  }
  if (dw) {
    int nb = smoe_rmsnorm_dw_blocks(N, D);
    double *part = (double *)smoe_cuda_scratch(1, sizeof(double) * (size_t)nb * D);
    LAUNCH(rmsnorm_dw_part_kernel, (size_t)nb * D, part, dout, inp, rstd, N, D, nb);
    LAUNCH(rmsnorm_dw_kernel, (size_t)D, dw, part, D, nb);
  }
}

/* ---- RoPE ---- */

/* one thread per pair (n, head, j), j < d/2 */
static __global__ void rope_kernel(real *x, const real *cos_t, const real *sin_t, int N, int T,
                                   int nh, int d, real sign) {
  const int h = d / 2;
  FOR_EACH(p, (size_t)N * nh * h) {
    size_t j = p % h, row = p / h, n = row / nh; /* row = n * nh + head */
    real *x1 = x + row * d + j;
    size_t at = (n % T) * h + j;
    smoe_rope_pair(x1, x1 + h, cos_t[at], sin_t[at], sign);
  }
}

static void rope(real *x, const real *cos_t, const real *sin_t, int N, int T, int nh, int d,
                 real sign) {
  const int h = d / 2;
  if (N <= 0 || nh <= 0 || h <= 0) return;
  LAUNCH(rope_kernel, (size_t)N * nh * h, x, cos_t, sin_t, N, T, nh, d, sign);
}

extern "C" void smoe_cuda_rope_forward(real *x, const real *cos_t, const real *sin_t, int N, int T,
                                       int nh, int d) {
  rope(x, cos_t, sin_t, N, T, nh, d, 1);
}

extern "C" void smoe_cuda_rope_backward(real *dx, const real *cos_t, const real *sin_t, int N,
                                        int T, int nh, int d) {
  rope(dx, cos_t, sin_t, N, T, nh, d, -1);
}

/* ---- attention ---- */

/* Warp sums and maxima by butterfly: every lane ends with the same value
 * (a + b == b + a exactly), the same bits every run for a given T. */
static __device__ __forceinline__ real warp_sum(real v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
static __device__ __forceinline__ real warp_max(real v) {
  for (int o = 16; o > 0; o /= 2) {
    real u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}

/* A warp per row of `rows` rows of T, row r at att + r * T holding the
 * scaled scores of query position t = r % T: the causal softmax over
 * columns 0..t, exactly 0 above. Lane l takes columns l, l + 32, ... */
static __global__ void causal_softmax_kernel(real *att, size_t rows, int T) {
  const int lane = threadIdx.x % 32;
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    real *row = att + r * T;
    const int t = (int)(r % T);
    real mx = row[0];
    for (int j = lane; j <= t; j += 32) mx = row[j] > mx ? row[j] : mx;
    mx = warp_max(mx);
    real sum = 0;
    for (int j = lane; j <= t; j += 32) {
      real e = smoe_exp_real(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    const real inv = 1 / warp_sum(sum);
    for (int j = lane; j < T; j += 32) row[j] = j <= t ? row[j] * inv : 0;
  }
}

/* A warp per row of count * T rows: row r is query position t = r % T of
 * batch entry e = r / T, its probabilities at p + e * sp + t * T and the
 * gradient dp at ds + r * T, replaced by ds = p (dp - sum_j p dp) * scale
 * on 0..t and 0 above. */
static __global__ void softmax_backward_kernel(real *ds, const real *p, long long sp, size_t rows,
                                               int T, real scale) {
  const int lane = threadIdx.x % 32;
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const int t = (int)(r % T);
    const real *pr = p + (size_t)(r / T) * sp + (size_t)t * T;
    real *g = ds + r * T;
    real pdp = 0;
    for (int j = lane; j <= t; j += 32) pdp += pr[j] * g[j];
    pdp = warp_sum(pdp);
    for (int j = lane; j < T; j += 32) g[j] = j <= t ? pr[j] * (g[j] - pdp) * scale : 0;
  }
}

/* The (sequence, head) pairs as strided-batched GEMMs. Heads of one
 * sequence are not evenly strided with GQA (query head h reads kv head
 * h / group), so each call takes a set whose q, k/v, att and output
 * pointers are: either one head h over the B sequences (calls: H), or for
 * one sequence b and one position g in the group, the Hkv heads
 * kh * group + g (calls: B * group) - whichever needs fewer calls. */
typedef struct {
  size_t q, kv, att;       /* offsets of the first of the set: q/out, k/v, att */
  long long sq, skv, satt; /* strides between members of the set */
  int count;
} head_set;

static int head_sets(int B, int H, int Hkv) {
  return H <= B * (H / Hkv) ? H : B * (H / Hkv);
}

static head_set head_set_at(int s, int B, int T, int H, int Hkv, int d) {
  const int group = H / Hkv;
  const size_t qs = (size_t)H * d, ks = (size_t)Hkv * d, TT = (size_t)T * T;
  head_set e;
  if (H <= B * group) { /* head s, over sequences */
    int h = s, kh = h / group;
    e.q = (size_t)h * d;
    e.kv = (size_t)kh * d;
    e.att = (size_t)h * TT;
    e.sq = (long long)(T * qs);
    e.skv = (long long)(T * ks);
    e.satt = (long long)(H * TT);
    e.count = B;
  } else { /* sequence b, group position g, over kv heads */
    int b = s / group, g = s % group;
    e.q = (size_t)b * T * qs + (size_t)g * d;
    e.kv = (size_t)b * T * ks;
    e.att = ((size_t)b * H + g) * TT;
    e.sq = (long long)group * d;
    e.skv = d;
    e.satt = (long long)(group * TT);
    e.count = Hkv;
  }
  return e;
}

extern "C" void smoe_cuda_attention_forward(real *out, real *att, const real *q, const real *k,
                                            const real *v, int B, int T, int H, int Hkv, int d) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  const int qs = H * d, ks = Hkv * d, n = head_sets(B, H, Hkv);
  const real scale = (real)(1.0 / sqrt((double)d));
  for (int s = 0; s < n; s++) { /* scores = q k^T / sqrt(d) */
    head_set e = head_set_at(s, B, T, H, Hkv, d);
    gemm_batched(0, 1, T, T, d, scale, q + e.q, qs, e.sq, k + e.kv, ks, e.skv, 0, att + e.att, T,
                 e.satt, e.count);
  }
  const size_t rows = (size_t)B * H * T; /* a warp each */
  LAUNCH(causal_softmax_kernel, rows * 32, att, rows, T);
  for (int s = 0; s < n; s++) { /* out = p v */
    head_set e = head_set_at(s, B, T, H, Hkv, d);
    gemm_batched(0, 0, T, d, T, 1, att + e.att, T, e.satt, v + e.kv, ks, e.skv, 0, out + e.q, qs,
                 e.sq, e.count);
  }
}

/* A warp per row of rows rows of n scores: the softmax over all n (the
 * decode step's: the cache holds only the past, nothing is masked). */
static __global__ void softmax_rows_kernel(real *att, size_t rows, int n) {
  const int lane = threadIdx.x % 32;
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    real *row = att + r * n;
    real mx = row[0];
    for (int j = lane; j < n; j += 32) mx = row[j] > mx ? row[j] : mx;
    mx = warp_max(mx);
    real sum = 0;
    for (int j = lane; j < n; j += 32) {
      real e = smoe_exp_real(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    const real inv = 1 / warp_sum(sum);
    for (int j = lane; j < n; j += 32) row[j] *= inv;
  }
}

/* The query heads of kv head kh are heads kh * group .. + group - 1: one
 * (group x d) block of q, so each kv head is one GEMM of a batch over the
 * Hkv heads: scores (group, n) = q_kh k_kh^T, out (group, d) = p v_kh. */
extern "C" void smoe_cuda_attention_decode(real *out, real *att, const real *q, const real *k,
                                           const real *v, int n, int H, int Hkv, int d) {
  if (n <= 0 || H <= 0) return;
  const int ks = Hkv * d, group = H / Hkv;
  const real scale = (real)(1.0 / sqrt((double)d));
  gemm_batched(0, 1, group, n, d, scale, q, d, (long long)group * d, k, ks, d, 0, att, n,
               (long long)group * n, Hkv);
  LAUNCH(softmax_rows_kernel, (size_t)H * 32, att, (size_t)H, n);
  gemm_batched(0, 0, group, d, n, 1, att, n, (long long)group * n, v, ks, d, 0, out, d,
               (long long)group * d, Hkv);
}

extern "C" void smoe_cuda_attention_backward(real *dq, real *dk, real *dv, const real *dout,
                                             const real *att, const real *q, const real *k,
                                             const real *v, int B, int T, int H, int Hkv, int d,
                                             smoe_arena_t *scratch) {
  (void)scratch;
  if (B <= 0 || T <= 0 || H <= 0) return;
  const int qs = H * d, ks = Hkv * d, n = head_sets(B, H, Hkv);
  const long long TT = (long long)T * T;
  const real scale = (real)(1.0 / sqrt((double)d));
  /* dp/ds of one set of heads at a time (the sets run in order on the stream) */
  const int most = head_set_at(0, B, T, H, Hkv, d).count;
  real *ds = (real *)smoe_cuda_scratch(0, sizeof(real) * (size_t)most * (size_t)TT);
  /* for each kv head its query heads come in increasing h, as on the CPU */
  for (int s = 0; s < n; s++) {
    head_set e = head_set_at(s, B, T, H, Hkv, d);
    const real *p = att + e.att, *go = dout + e.q;
    /* dv += p^T dout */
    gemm_batched(1, 0, T, d, T, 1, p, T, e.satt, go, qs, e.sq, 1, dv + e.kv, ks, e.skv, e.count);
    /* dp = dout v^T */
    gemm_batched(0, 1, T, T, d, 1, go, qs, e.sq, v + e.kv, ks, e.skv, 0, ds, T, TT, e.count);
    /* ds = p (dp - sum_j p dp) / sqrt(d), 0 above the diagonal */
    size_t rows = (size_t)e.count * T;
    LAUNCH(softmax_backward_kernel, rows * 32, ds, p, e.satt, rows, T, scale);
    /* dq += ds k; dk += ds^T q */
    gemm_batched(0, 0, T, d, T, 1, ds, T, TT, k + e.kv, ks, e.skv, 1, dq + e.q, qs, e.sq, e.count);
    gemm_batched(1, 0, T, d, T, 1, ds, T, TT, q + e.q, qs, e.sq, 1, dk + e.kv, ks, e.skv, e.count);
  }
}

/* ---- cross-entropy ---- */

/* One thread per row (rows.h, the CPU's order): probabilities in place,
 * -log p[target] into nll and whether the row counts into valid. */
static __global__ void xent_kernel(real *logits, double *nll, int32_t *valid,
                                   const int32_t *targets, int N, int V) {
  FOR_EACH(n, (size_t)N) {
    nll[n] = smoe_xent_row(logits + n * V, V, targets[n]);
    valid[n] = targets[n] >= 0;
  }
}

extern "C" double smoe_cuda_crossentropy_forward(real *logits, const int32_t *targets, int N, int V,
                                                 int *n_valid, smoe_arena_t *scratch) {
  (void)scratch;
  if (N <= 0) {
    if (n_valid) *n_valid = 0;
    return 0.0;
  }
  /* nll (N doubles) then valid (N ints), brought back in one copy */
  const size_t bytes = (sizeof(double) + sizeof(int32_t)) * (size_t)N;
  char *dev = (char *)smoe_cuda_scratch(0, bytes), *host = (char *)smoe_cuda_pinned(0, bytes);
  double *nll = (double *)dev;
  int32_t *valid = (int32_t *)(dev + sizeof(double) * (size_t)N);
  LAUNCH(xent_kernel, (size_t)N, logits, nll, valid, targets, N, V);
  smoe_cuda_download(host, dev, bytes);
  const double *h_nll = (const double *)host;
  const int32_t *h_valid = (const int32_t *)(host + sizeof(double) * (size_t)N);
  /* summed in row order, as the CPU: the same double from the same rows */
  double total = 0;
  int count = 0;
  for (int n = 0; n < N; n++)
    if (h_valid[n]) total += h_nll[n], count++;
  if (n_valid) *n_valid = count;
  return count ? total / count : 0.0;
}

/* one thread per element: scale (p - onehot), a zero row where target < 0 */
static __global__ void xent_backward_kernel(real *dlogits, const real *probs,
                                            const int32_t *targets, int N, int V, real scale) {
  FOR_EACH(j, (size_t)N * V) {
    size_t n = j / V, i = j % V;
    int32_t t = targets[n];
    if (t < 0)
      dlogits[j] = 0;
    else {
      real g = scale * probs[j];
      if ((int64_t)i == t) g -= scale;
      dlogits[j] = g;
    }
  }
}

extern "C" void smoe_cuda_crossentropy_backward(real *dlogits, const real *probs,
                                                const int32_t *targets, int N, int V, real scale) {
  LAUNCH(xent_backward_kernel, (size_t)N * V, dlogits, probs, targets, N, V, scale);
}

/* the two in place: the probabilities become the gradient where they lie */
extern "C" double smoe_cuda_crossentropy(real *logits, const int32_t *targets, int N, int V,
                                         real scale, int *n_valid, smoe_arena_t *scratch) {
  double loss = smoe_cuda_crossentropy_forward(logits, targets, N, V, n_valid, scratch);
  smoe_cuda_crossentropy_backward(logits, logits, targets, N, V, scale);
  return loss;
}
