/* ops_moe.cu: the MoE block (router, gather/combine, expert MLPs) and the
 * routing rows (histogram, capacity, slots, positions) of cuda_ops.h, in
 * `real`, on the shared stream, deterministic (no float atomics; integer
 * atomics only where they count). Compiled with --fmad=false: the row and
 * element functions of elem.h round as on the CPU.
 *
 * The routing ops that rank assignments ("the m-th assignment of expert e
 * in some order") share one counting primitive, order_ranks: the order is
 * cut into chunks of RANK_CHUNK positions; per chunk and key a count, a
 * sequential scan over the chunks per key, then each position adds the
 * same-key positions before it in its chunk. O(n RANK_CHUNK + chunks keys)
 * work, exact. capacity_keep's weight order comes from a stable CUB radix
 * sort on the gate weight. */
#include <string.h>

#include <cub/device/device_radix_sort.cuh>

#include "cuda_common.h"
#include "cuda_ops.h"
#include "elem.h"
#include "moe.h"

#ifdef SMOE_REAL_DOUBLE
#define router_row smoe_router_row_f64
#define router_backward_row smoe_router_backward_row_f64
#define swiglu smoe_swiglu_f64
#define swiglu_backward smoe_swiglu_backward_f64
#else
#define router_row smoe_router_row_f32
#define router_backward_row smoe_router_backward_row_f32
#define swiglu smoe_swiglu_f32
#define swiglu_backward smoe_swiglu_backward_f32
#endif

/* Carves aligned pieces out of one scratch buffer: call with base NULL to
 * size it, then again with the buffer. */
struct carve {
  char *base;
  size_t used;
  template <typename T>
  T *take(size_t n) {
    size_t at = (used + 255) & ~(size_t)255;
    used = at + sizeof(T) * n;
    return base ? (T *)(base + at) : nullptr;
  }
};

/* ---- router ---------------------------------------------------------- */

/* one thread per row: elem.h's row, as the CPU */
static __global__ void router_forward_kernel(real *probs, real *lse, int32_t *idx, real *gw,
                                             const real *bias, int N, int E, int K) {
  FOR_EACH(n, (size_t)N)
  router_row(probs + n * E, lse + n, idx + n * K, gw + n * K, bias, E, K);
}

/* choice counts: one thread per assignment a = n K + k, integer atomics */
static __global__ void router_counts_kernel(unsigned long long *counts, const int32_t *idx, int N,
                                            int E, int K) {
  FOR_EACH(a, (size_t)N * K) atomicAdd(&counts[(a % K) * E + idx[a]], 1ULL);
}

/* thread e < E: prob_sum[e] over the rows in order; thread E: z_sum; in
 * double, the CPU's order (bitwise equal) */
static __global__ void router_sums_kernel(double *prob_sum, double *z_sum, const real *probs,
                                          const real *lse, int N, int E) {
  FOR_EACH(t, (size_t)E + 1) {
    double s = 0;
    if (t < (size_t)E)
      for (int n = 0; n < N; n++) s += probs[(size_t)n * E + t];
    else
      for (int n = 0; n < N; n++) s += (double)lse[n] * lse[n];
    if (t < (size_t)E)
      prob_sum[t] = s;
    else
      *z_sum = s;
  }
}

static __global__ void router_backward_kernel(real *dlogits, const real *probs, const real *lse,
                                              const int32_t *idx, const real *gw, const real *dgw,
                                              const real *aux_dp, real z_scale, int N, int E,
                                              int K) {
  FOR_EACH(n, (size_t)N)
  router_backward_row(dlogits + n * E, probs + n * E, lse[n], idx + n * K, gw + n * K, dgw + n * K,
                      aux_dp, z_scale, E, K);
}

extern "C" void smoe_cuda_router_forward(real *probs, real *lse, int32_t *idx, real *gw,
                                         const real *bias, int N, int E, int K) {
  LAUNCH(router_forward_kernel, (size_t)N, probs, lse, idx, gw, bias, N, E, K);
}

extern "C" void smoe_cuda_router_stats(int64_t *choice_counts, double *prob_sum, double *z_sum,
                                       const real *probs, const real *lse, const int32_t *idx,
                                       int N, int E, int K) {
  /* one buffer, one download: counts (K, E) | prob_sum (E) | z_sum, 8 bytes each */
  const size_t n8 = (size_t)K * E + E + 1, bytes = 8 * n8;
  char *d = (char *)smoe_cuda_scratch(1, bytes);
  unsigned long long *dc = (unsigned long long *)d;
  double *dp = (double *)(d + 8 * (size_t)K * E), *dz = dp + E;
  CU(cudaMemsetAsync(dc, 0, 8 * (size_t)K * E, smoe_cuda_stream()));
  LAUNCH(router_counts_kernel, (size_t)N * K, dc, idx, N, E, K);
  LAUNCH(router_sums_kernel, (size_t)E + 1, dp, dz, probs, lse, N, E);
  char *h = (char *)smoe_cuda_pinned(0, bytes);
  smoe_cuda_download(h, d, bytes);
  memcpy(choice_counts, h, 8 * (size_t)K * E);
  memcpy(prob_sum, h + 8 * (size_t)K * E, 8 * (size_t)E);
  memcpy(z_sum, h + 8 * ((size_t)K * E + E), 8);
}

extern "C" void smoe_cuda_router_backward(real *dlogits, const real *probs, const real *lse,
                                          const int32_t *idx, const real *gw, const real *dgw,
                                          const real *aux_dp, real z_scale, int N, int E, int K) {
  LAUNCH(router_backward_kernel, (size_t)N, dlogits, probs, lse, idx, gw, dgw, aux_dp, z_scale, N,
         E, K);
}

/* ---- gather and combine ---------------------------------------------- */

/* one thread per element of a row moved or summed: (a, i) or (n, i); sums
 * over k in the CPU's order */
static __global__ void moe_gather_kernel(real *xe, const real *x, const int *pos, int N, int K,
                                         int D) {
  FOR_EACH(j, (size_t)N * K * D) {
    size_t a = j / D, i = j % D;
    if (pos[a] >= 0) xe[(size_t)pos[a] * D + i] = x[(a / K) * D + i];
  }
}

static __global__ void moe_gather_backward_kernel(real *dx, const real *dxe, const int *pos, int N,
                                                  int K, int D) {
  FOR_EACH(j, (size_t)N * D) {
    size_t n = j / D, i = j % D;
    for (int k = 0; k < K; k++) {
      int p = pos[n * K + k];
      if (p >= 0) dx[j] += dxe[(size_t)p * D + i];
    }
  }
}

static __global__ void moe_combine_kernel(real *out, const real *ye, const real *gw, const int *pos,
                                          int N, int K, int D) {
  FOR_EACH(j, (size_t)N * D) {
    size_t n = j / D, i = j % D;
    for (int k = 0; k < K; k++) {
      int p = pos[n * K + k];
      if (p >= 0) out[j] += gw[n * K + k] * ye[(size_t)p * D + i];
    }
  }
}

static __global__ void moe_combine_dye_kernel(real *dye, const real *dout, const real *gw,
                                              const int *pos, int N, int K, int D) {
  FOR_EACH(j, (size_t)N * K * D) {
    size_t a = j / D, i = j % D;
    if (pos[a] >= 0) dye[(size_t)pos[a] * D + i] = gw[a] * dout[(a / K) * D + i];
  }
}

/* one thread per assignment: the dot product in the CPU's order */
static __global__ void moe_combine_dgw_kernel(real *dgw, const real *dout, const real *ye,
                                              const int *pos, int N, int K, int D) {
  FOR_EACH(a, (size_t)N * K) {
    real s = 0;
    if (pos[a] >= 0)
      for (int i = 0; i < D; i++) s += dout[(a / K) * D + i] * ye[(size_t)pos[a] * D + i];
    dgw[a] = s;
  }
}

extern "C" void smoe_cuda_moe_gather(real *xe, const real *x, const int *pos, int N, int K, int D) {
  LAUNCH(moe_gather_kernel, (size_t)N * K * D, xe, x, pos, N, K, D);
}

extern "C" void smoe_cuda_moe_gather_backward(real *dx, const real *dxe, const int *pos, int N,
                                              int K, int D) {
  LAUNCH(moe_gather_backward_kernel, (size_t)N * D, dx, dxe, pos, N, K, D);
}

extern "C" void smoe_cuda_moe_combine(real *out, const real *ye, const real *gw, const int *pos,
                                      int N, int K, int D) {
  LAUNCH(moe_combine_kernel, (size_t)N * D, out, ye, gw, pos, N, K, D);
}

extern "C" void smoe_cuda_moe_combine_backward(real *dye, real *dgw, const real *dout,
                                               const real *ye, const real *gw, const int *pos,
                                               int N, int K, int D) {
  LAUNCH(moe_combine_dye_kernel, (size_t)N * K * D, dye, dout, gw, pos, N, K, D);
  LAUNCH(moe_combine_dgw_kernel, (size_t)N * K, dgw, dout, ye, pos, N, K, D);
}

/* ---- expert MLPs ----------------------------------------------------- */

/* one thread per element of act (rows, F) from h13 (rows, 2F) */
static __global__ void swiglu_kernel(real *act, const real *h13, int64_t rows, int F) {
  FOR_EACH(i, (size_t)rows * F) {
    const real *h1 = h13 + (i / F) * 2 * (size_t)F + i % F;
    act[i] = swiglu(h1[0], h1[F]);
  }
}

static __global__ void swiglu_backward_kernel(real *dh13, const real *dact, const real *h13,
                                              int64_t rows, int F) {
  FOR_EACH(i, (size_t)rows * F) {
    size_t at = (i / F) * 2 * (size_t)F + i % F;
    swiglu_backward(dact[i], h13[at], h13[at + F], dh13 + at, dh13 + at + F);
  }
}

/* moe.c's GEMMs with the same operands, one per non-empty expert (offsets
 * on the host); the SwiGLU of all experts' rows (contiguous from
 * offsets[0] to offsets[E]) in one launch between them */
extern "C" void smoe_cuda_experts_forward(real *ye, real *h13, real *act, const real *xe,
                                          const real *experts, const int *offsets, int E, int D,
                                          int F) {
  const size_t P = smoe_expert_numel(D, F);
  for (int e = 0; e < E; e++) {
    int r0 = offsets[e], n = offsets[e + 1] - r0;
    if (n == 0) continue;
    /* smoe_matmul_forward(h, xe, w13, n, D, 2F) */
    smoe_cuda_gemm_rm(0, 1, n, 2 * F, D, 1, xe + (size_t)r0 * D, D, experts + e * P, D, 0,
                      h13 + (size_t)r0 * 2 * F, 2 * F);
  }
  const int64_t r0 = offsets[0], rows = offsets[E] - r0;
  LAUNCH(swiglu_kernel, (size_t)rows * F, act + (size_t)r0 * F, h13 + (size_t)r0 * 2 * F, rows, F);
  for (int e = 0; e < E; e++) {
    int r0 = offsets[e], n = offsets[e + 1] - r0;
    if (n == 0) continue;
    /* smoe_matmul_forward(ye, act, w2, n, F, D) */
    const real *w2 = experts + e * P + 2 * (size_t)F * D;
    smoe_cuda_gemm_rm(0, 1, n, D, F, 1, act + (size_t)r0 * F, F, w2, F, 0, ye + (size_t)r0 * D, D);
  }
}

extern "C" void smoe_cuda_experts_backward(real *dxe, real *dexperts, real *dh13, real *dact,
                                           const real *dye, const real *xe, const real *h13,
                                           const real *act, const real *experts, const int *offsets,
                                           int E, int D, int F) {
  const size_t P = smoe_expert_numel(D, F);
  for (int e = 0; e < E; e++) {
    int r0 = offsets[e], n = offsets[e + 1] - r0;
    if (n == 0) continue;
    const real *w2 = experts + e * P + 2 * (size_t)F * D, *dy = dye + (size_t)r0 * D;
    real *dw2 = dexperts + e * P + 2 * (size_t)F * D;
    /* ye = act w2^T: dact = dye w2 (written), dw2 += dye^T act */
    smoe_cuda_gemm_rm(0, 0, n, F, D, 1, dy, D, w2, F, 0, dact + (size_t)r0 * F, F);
    smoe_cuda_gemm_rm(1, 0, D, F, n, 1, dy, D, act + (size_t)r0 * F, F, 1, dw2, F);
  }
  const int64_t r0 = offsets[0], rows = offsets[E] - r0;
  LAUNCH(swiglu_backward_kernel, (size_t)rows * F, dh13 + (size_t)r0 * 2 * F, dact + (size_t)r0 * F,
         h13 + (size_t)r0 * 2 * F, rows, F);
  for (int e = 0; e < E; e++) {
    int r0 = offsets[e], n = offsets[e + 1] - r0;
    if (n == 0) continue;
    const real *w13 = experts + e * P, *dh = dh13 + (size_t)r0 * 2 * F;
    /* h13 = xe w13^T: dxe = dh13 w13 (written), dw13 += dh13^T xe */
    smoe_cuda_gemm_rm(0, 0, n, D, 2 * F, 1, dh, 2 * F, w13, D, 0, dxe + (size_t)r0 * D, D);
    smoe_cuda_gemm_rm(1, 0, 2 * F, D, n, 1, dh, 2 * F, xe + (size_t)r0 * D, D, 1, dexperts + e * P,
                      D);
  }
}

/* ---- histogram ------------------------------------------------------- */

enum { HIST_SHARED_BINS = 4096 };

/* few bins: a block's counts in shared memory, then added to the total */
static __global__ void histogram_shared_kernel(unsigned long long *counts, const int32_t *x,
                                               size_t n, int n_bins) {
  extern __shared__ unsigned int local[];
  for (int b = threadIdx.x; b < n_bins; b += blockDim.x) local[b] = 0;
  __syncthreads();
  FOR_EACH(i, n) {
    int v = x[i];
    if (v >= 0 && v < n_bins) atomicAdd(&local[v], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < n_bins; b += blockDim.x)
    if (local[b]) atomicAdd(&counts[b], (unsigned long long)local[b]);
}

static __global__ void histogram_kernel(unsigned long long *counts, const int32_t *x, size_t n,
                                        int n_bins) {
  FOR_EACH(i, n) {
    int v = x[i];
    if (v >= 0 && v < n_bins) atomicAdd(&counts[v], 1ULL);
  }
}

extern "C" void smoe_cuda_histogram(int64_t *counts, const int32_t *x, int n, int n_bins) {
  const size_t bytes = sizeof(int64_t) * (size_t)n_bins;
  if (n <= 0 || n_bins <= 0) {
    if (n_bins > 0) memset(counts, 0, bytes);
    return;
  }
  unsigned long long *d = (unsigned long long *)smoe_cuda_scratch(1, bytes);
  CU(cudaMemsetAsync(d, 0, bytes, smoe_cuda_stream()));
  if (n_bins <= HIST_SHARED_BINS) {
    /* at most 64 blocks: each block's shared counts stay far below 2^32 */
    unsigned blocks = smoe_blocks((size_t)n, SMOE_THREADS);
    blocks = blocks < 64 ? blocks : 64;
    histogram_shared_kernel<<<blocks, SMOE_THREADS, sizeof(unsigned) * (size_t)n_bins,
                              smoe_cuda_stream()>>>(d, x, (size_t)n, n_bins);
    LAUNCHED();
  } else {
    LAUNCH(histogram_kernel, (size_t)n, d, x, (size_t)n, n_bins);
  }
  void *h = smoe_cuda_pinned(0, bytes);
  smoe_cuda_download(h, d, bytes);
  memcpy(counts, h, bytes);
}

/* ---- ranks in an order (the routing rows' primitive) ------------------ */

enum { RANK_CHUNK = 256 }; /* positions per chunk = threads per block */

/* the assignment at order position i, and its key (-1: skipped) */
static __device__ __forceinline__ int key_at(int *a, int i, const int32_t *key, const uint8_t *keep,
                                             const int32_t *order, int n_keys) {
  *a = order ? order[i] : i;
  int k = key[*a];
  return (keep && !keep[*a]) || k >= n_keys ? -1 : k;
}

/* block c counts each key's positions of chunk c: cnt (chunks, n_keys) */
static __global__ void chunk_count_kernel(int *cnt, const int32_t *key, const uint8_t *keep,
                                          const int32_t *order, int n, int n_keys) {
  int i = blockIdx.x * RANK_CHUNK + threadIdx.x, a;
  if (i >= n) return;
  int k = key_at(&a, i, key, keep, order, n_keys);
  if (k >= 0) atomicAdd(&cnt[(size_t)blockIdx.x * n_keys + k], 1);
}

/* one thread per key: prefix (chunks, n_keys) = base[key] (0 without base)
 * plus the key's positions in earlier chunks */
static __global__ void chunk_scan_kernel(int64_t *prefix, const int *cnt, int chunks, int n_keys,
                                         const int64_t *base) {
  FOR_EACH(k, (size_t)n_keys) {
    int64_t s = base ? base[k] : 0;
    for (int c = 0; c < chunks; c++) {
      prefix[(size_t)c * n_keys + k] = s;
      s += cnt[(size_t)c * n_keys + k];
    }
  }
}

/* block c, thread t = position i of chunk c: out[a] = the chunk's prefix
 * of its key plus the same-key positions before t in the chunk; -1 when
 * skipped */
template <typename O>
static __global__ void chunk_rank_kernel(O *out, const int64_t *prefix, const int32_t *key,
                                         const uint8_t *keep, const int32_t *order, int n,
                                         int n_keys) {
  __shared__ int32_t sk[RANK_CHUNK];
  const int t = threadIdx.x, i = blockIdx.x * RANK_CHUNK + t;
  int a = 0, k = -1;
  if (i < n) k = key_at(&a, i, key, keep, order, n_keys);
  sk[t] = k;
  __syncthreads();
  if (i >= n) return;
  if (k < 0) {
    out[a] = -1;
    return;
  }
  int within = 0;
  for (int j = 0; j < t; j++) within += sk[j] == k;
  out[a] = (O)(prefix[(size_t)blockIdx.x * n_keys + k] + within);
}

/* For the n positions of an order (assignment a = order[i], or i when
 * order is NULL) with key[a] in [0, n_keys) (skipped where keep[a] is 0):
 * out[a] = base[key] (base device, n_keys; 0 when NULL) + the number of
 * earlier positions with the same key; -1 for skipped ones. Work memory in
 * scratch `which`. */
template <typename O>
static void order_ranks(O *out, const int32_t *key, const uint8_t *keep, const int32_t *order,
                        int n, int n_keys, const int64_t *base, int which) {
  if (n <= 0) return;
  const int chunks = (n + RANK_CHUNK - 1) / RANK_CHUNK;
  const size_t cells = (size_t)chunks * (n_keys > 0 ? n_keys : 0);
  carve c = {nullptr, 0};
  c.take<int>(cells), c.take<int64_t>(cells);
  c.base = (char *)smoe_cuda_scratch(which, c.used), c.used = 0;
  int *cnt = c.take<int>(cells);
  int64_t *prefix = c.take<int64_t>(cells);
  cudaStream_t s = smoe_cuda_stream();
  if (cells) {
    CU(cudaMemsetAsync(cnt, 0, sizeof(int) * cells, s));
    chunk_count_kernel<<<chunks, RANK_CHUNK, 0, s>>>(cnt, key, keep, order, n, n_keys);
    LAUNCHED();
    LAUNCH(chunk_scan_kernel, (size_t)n_keys, prefix, cnt, chunks, n_keys, base);
  }
  chunk_rank_kernel<O><<<chunks, RANK_CHUNK, 0, s>>>(out, prefix, key, keep, order, n, n_keys);
  LAUNCHED();
}

/* ---- capacity -------------------------------------------------------- */

/* position order i = k N + n (all k-th choices in token order) */
static __global__ void position_order_kernel(int32_t *order, int N, int K) {
  FOR_EACH(i, (size_t)N * K) order[i] = (int32_t)((i % N) * K + i / N);
}

/* sort key of gate weight w: ascending keys = descending weights; -0 as +0
 * (placement.c compares with ==), so equal weights have equal keys and the
 * stable sort keeps them in position order. sval = the assignment. */
static __global__ void weight_key_kernel(unsigned long long *skey, int32_t *sval, const real *gw,
                                         int N, int K) {
  FOR_EACH(i, (size_t)N * K) {
    int a = (int)((i % N) * K + i / N);
    real w = gw[a];
    if (w == 0) w = 0;
#ifdef SMOE_REAL_DOUBLE
    unsigned long long u = (unsigned long long)__double_as_longlong(w);
    u = (u >> 63) ? ~u : u | (1ULL << 63); /* ascending in w */
    skey[i] = ~u;
#else
    unsigned int u = __float_as_uint(w);
    u = (u >> 31) ? ~u : u | (1u << 31); /* ascending in w */
    skey[i] = (unsigned long long)~u;
#endif
    sval[i] = a;
  }
}

/* keep[a] = its rank among its expert's assignments < the capacity */
static __global__ void keep_kernel(uint8_t *keep, unsigned int *dropped, const int64_t *rank,
                                   const int32_t *idx, const int64_t *capacity, int NK) {
  FOR_EACH(a, (size_t)NK) {
    uint8_t k = rank[a] < capacity[idx[a]];
    keep[a] = k;
    if (!k) atomicAdd(dropped, 1u);
  }
}

extern "C" int64_t smoe_cuda_capacity_keep(uint8_t *keep, const int32_t *idx, const real *gw, int N,
                                           int K, int E, const int64_t *capacity, int by_weight,
                                           smoe_arena_t *scratch) {
  (void)scratch;
  const int NK = N * K;
  if (NK <= 0) return 0;
  const int64_t *cap = (const int64_t *)smoe_cuda_upload(0, capacity, sizeof(int64_t) * E);
  carve c = {nullptr, 0};
  for (int pass = 0; pass < 2; pass++) {
    if (pass) c.base = (char *)smoe_cuda_scratch(1, c.used), c.used = 0;
    c.take<int32_t>(NK), c.take<int32_t>(NK), c.take<unsigned long long>(2 * (size_t)NK);
    c.take<int64_t>(NK), c.take<unsigned int>(1);
  }
  c.used = 0;
  int32_t *order = c.take<int32_t>(NK), *sval = c.take<int32_t>(NK);
  unsigned long long *skey = c.take<unsigned long long>(2 * (size_t)NK);
  int64_t *rank = c.take<int64_t>(NK);
  unsigned int *dropped = c.take<unsigned int>(1);
  cudaStream_t s = smoe_cuda_stream();
  if (by_weight) { /* placement.c's qsort: weight descending, then (k, n) */
    LAUNCH(weight_key_kernel, (size_t)NK, skey, sval, gw, N, K);
    const int bits = 8 * (int)sizeof(real);
    size_t temp = 0;
    CU(cub::DeviceRadixSort::SortPairs(nullptr, temp, skey, skey + NK, sval, order, NK, 0, bits,
                                       s));
    void *t = smoe_cuda_scratch(2, temp);
    CU(cub::DeviceRadixSort::SortPairs(t, temp, skey, skey + NK, sval, order, NK, 0, bits, s));
  } else {
    LAUNCH(position_order_kernel, (size_t)NK, order, N, K);
  }
  order_ranks<int64_t>(rank, idx, nullptr, order, NK, E, nullptr, 3);
  CU(cudaMemsetAsync(dropped, 0, sizeof *dropped, s));
  LAUNCH(keep_kernel, (size_t)NK, keep, dropped, rank, idx, cap, NK);
  unsigned int *h = (unsigned int *)smoe_cuda_pinned(0, sizeof *h);
  smoe_cuda_download(h, dropped, sizeof *h);
  return (int64_t)*h;
}

/* ---- slots and positions --------------------------------------------- */

static __global__ void route_slots_kernel(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                                          const int *slot_of_expert, int NK) {
  FOR_EACH(a, (size_t)NK) slot_of[a] = (!keep || keep[a]) ? slot_of_expert[idx[a]] : -1;
}

/* the host table of E slots goes up first */
extern "C" void smoe_cuda_route_slots(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                                      const int *slot_of_expert, int E, int NK) {
  if (NK <= 0) return;
  const int *table = (const int *)smoe_cuda_upload(0, slot_of_expert, sizeof(int) * (size_t)E);
  LAUNCH(route_slots_kernel, (size_t)NK, slot_of, idx, keep, table, NK);
}

/* pos[a] = rank (start + earlier assignments of the slot), -1 where none */
extern "C" void smoe_cuda_positions(int *pos, const int32_t *slot_of, const int64_t *start, int NK,
                                    int n_slots, smoe_arena_t *scratch) {
  (void)scratch;
  if (NK <= 0) return;
  const int64_t *base = (const int64_t *)smoe_cuda_upload(
      0, start, sizeof(int64_t) * (size_t)(n_slots > 0 ? n_slots : 0));
  order_ranks<int>(pos, slot_of, nullptr, nullptr, NK, n_slots, base, 3);
}

/* assignment a with rank j (among its expert's kept assignments, in order)
 * takes the first of its expert's slots whose cumulative quota exceeds j:
 * what the CPU's one-by-one consumption gives. -1 when not kept; where the
 * quotas run out, -2 and the earliest such a (as NK - a, max) in *fail_rev */
static __global__ void split_assign_kernel(int32_t *cand, int *fail_rev, const int64_t *rank,
                                           const int32_t *idx, const int32_t *first,
                                           const int32_t *slots, const int64_t *cum, int NK) {
  FOR_EACH(a, (size_t)NK) {
    const int64_t j = rank[a];
    int32_t s = -1;
    if (j >= 0) {
      const int e = idx[a];
      s = -2;
      for (int m = first[e]; m < first[e + 1]; m++)
        if (cum[m] > j) {
          s = slots[m];
          break;
        }
      if (s == -2) atomicMax(fail_rev, NK - (int)a);
    }
    cand[a] = s;
  }
}

/* slot_of as the CPU leaves it: assignments before the first failure a*
 * get their slot (or -1), a* gets -1, later ones are not written; used[e]
 * counts the kept assignments of e before a* (the quota they consumed) */
static __global__ void split_write_kernel(int32_t *slot_of, int *used, const int *fail_rev,
                                          const int32_t *cand, const int32_t *idx, int NK) {
  const int stop = NK - *fail_rev; /* NK when nothing failed */
  FOR_EACH(a, (size_t)NK) {
    if ((int)a < stop) {
      slot_of[a] = cand[a];
      if (cand[a] >= 0) atomicAdd(&used[idx[a]], 1);
    } else if ((int)a == stop) {
      slot_of[a] = -1;
    }
  }
}

extern "C" int smoe_cuda_split_slots(int32_t *slot_of, const int32_t *idx, const uint8_t *keep,
                                     const int *first, const int *slots, int64_t *quota, int E,
                                     int NK, smoe_arena_t *scratch) {
  (void)scratch;
  if (NK <= 0) return 0;
  /* on the host, from the quotas as they are now: each expert's slot list
   * with its cumulative quota (a negative quota never runs out on the CPU,
   * which only skips slots at 0), then first (E+1) and the slots; staged in
   * pinned scratch 1 (the op waits for the stream before it returns) */
  const int n_ent = first[E];
  const size_t b_cum = sizeof(int64_t) * (size_t)n_ent, b_first = sizeof(int32_t) * (size_t)(E + 1),
               b_slots = sizeof(int32_t) * (size_t)n_ent, bytes = b_cum + b_first + b_slots;
  char *h = (char *)smoe_cuda_pinned(1, bytes);
  int64_t *cum = (int64_t *)h;
  int32_t *hfirst = (int32_t *)(h + b_cum), *hslots = (int32_t *)(h + b_cum + b_first);
  for (int e = 0; e < E; e++) {
    int64_t c = 0;
    for (int m = first[e]; m < first[e + 1]; m++) {
      const int64_t q = quota[slots[m]];
      c = (c == INT64_MAX || q < 0) ? INT64_MAX : c + q;
      cum[m] = c;
    }
  }
  memcpy(hfirst, first, b_first);
  memcpy(hslots, slots, b_slots);
  const char *d = (const char *)smoe_cuda_upload(0, h, bytes);
  const int64_t *dcum = (const int64_t *)d;
  const int32_t *dfirst = (const int32_t *)(d + b_cum),
                *dslots = (const int32_t *)(d + b_cum + b_first);

  carve c = {nullptr, 0};
  for (int pass = 0; pass < 2; pass++) {
    if (pass) c.base = (char *)smoe_cuda_scratch(1, c.used), c.used = 0;
    c.take<int64_t>(NK), c.take<int32_t>(NK), c.take<int>(1 + (size_t)E);
  }
  c.used = 0;
  int64_t *rank = c.take<int64_t>(NK);
  int32_t *cand = c.take<int32_t>(NK);
  int *res = c.take<int>(1 + (size_t)E); /* fail_rev, used (E) */
  cudaStream_t s = smoe_cuda_stream();
  CU(cudaMemsetAsync(res, 0, sizeof(int) * (1 + (size_t)E), s));
  order_ranks<int64_t>(rank, idx, keep, nullptr, NK, E, nullptr, 3);
  LAUNCH(split_assign_kernel, (size_t)NK, cand, res, rank, idx, dfirst, dslots, dcum, NK);
  LAUNCH(split_write_kernel, (size_t)NK, slot_of, res + 1, res, cand, idx, NK);
  int *hres = (int *)smoe_cuda_pinned(0, sizeof(int) * (1 + (size_t)E));
  smoe_cuda_download(hres, res, sizeof(int) * (1 + (size_t)E));
  /* the CPU's quota consumption: each expert's used assignments take its
   * slots' quotas in list order, skipping slots at 0 */
  for (int e = 0; e < E; e++) {
    int64_t left = hres[1 + e];
    for (int m = first[e]; m < first[e + 1] && left > 0; m++) {
      int64_t *q = &quota[slots[m]];
      if (*q == 0) continue;
      const int64_t t = *q < 0 || *q > left ? left : *q;
      *q -= t;
      left -= t;
    }
  }
  return hres[0] ? -1 : 0;
}
