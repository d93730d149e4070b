/* comm_nccl.c: the NCCL data plane (comm_nccl.h). */
#include "comm_nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <string.h>

#include "cuda_ops.h"

struct smoe_nccl {
  ncclComm_t comm;
  cudaStream_t stream;
  int rank, size;
  const smoe_ops_t *ops;
  real *stage; /* device: the slices a reduction sums, grown once */
  size_t stage_n;
};

/* an NCCL error inside a step cannot be undone: named, then the job ends */
#define NC(call)                                                                        \
  do {                                                                                  \
    ncclResult_t r_ = (call);                                                           \
    if (r_ != ncclSuccess) {                                                            \
      fprintf(stderr, "swiftmoe: NCCL error: %s failed: %s (%s:%d)\n", #call,           \
              ncclGetErrorString(r_), __FILE__, __LINE__);                              \
      smoe_cuda_fatal_exit();                                                           \
    }                                                                                   \
  } while (0)

int smoe_nccl_usable(int ranks_here) {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n >= ranks_here;
}

int smoe_nccl_id(void *id, char *err, size_t err_len) {
  ncclUniqueId u;
  ncclResult_t r = ncclGetUniqueId(&u);
  if (r != ncclSuccess) {
    snprintf(err, err_len, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    return -1;
  }
  memcpy(id, &u, sizeof u < SMOE_NCCL_ID_BYTES ? sizeof u : SMOE_NCCL_ID_BYTES);
  return 0;
}

smoe_nccl_t *smoe_nccl_open(const void *id, int rank, int size, const smoe_ops_t *ops, char *err,
                            size_t err_len) {
  _Static_assert(sizeof(ncclUniqueId) == SMOE_NCCL_ID_BYTES, "NCCL's id is 128 bytes");
  ncclUniqueId u;
  memcpy(&u, id, sizeof u);
  smoe_nccl_t *nc = xcalloc(1, sizeof *nc);
  nc->rank = rank, nc->size = size, nc->ops = ops;
  nc->stream = (cudaStream_t)smoe_cuda_stream_handle();
  ncclResult_t r = ncclCommInitRank(&nc->comm, size, u, rank);
  if (r != ncclSuccess) {
    snprintf(err, err_len, "ncclCommInitRank (rank %d of %d): %s", rank, size,
             ncclGetErrorString(r));
    free(nc);
    return NULL;
  }
  return nc;
}

void smoe_nccl_close(smoe_nccl_t *nc) {
  if (!nc) return;
  smoe_cuda_sync();
  ncclCommDestroy(nc->comm);
  nc->ops->free(nc->stage);
  free(nc);
}

static real *stage(smoe_nccl_t *nc, size_t n) {
  if (n > nc->stage_n) {
    nc->ops->free(nc->stage); /* waits for the stream: queued work may use it */
    nc->stage_n = n > 2 * nc->stage_n ? n : 2 * nc->stage_n;
    nc->stage = nc->ops->alloc(nc->stage_n * sizeof(real));
  }
  return nc->stage;
}

void smoe_nccl_alltoallv(smoe_nccl_t *nc, const void *send, const int64_t *send_counts,
                         const int64_t *send_offsets, void *recv, const int64_t *recv_counts,
                         const int64_t *recv_offsets, size_t elem) {
  const char *s = send;
  char *r = recv;
  NC(ncclGroupStart());
  for (int g = 0; g < nc->size; g++) { /* per peer block: rows land in slot order */
    if (g == nc->rank) continue;
    if (send_counts[g])
      NC(ncclSend(s + (size_t)send_offsets[g] * elem, (size_t)send_counts[g] * elem, ncclUint8, g,
                  nc->comm, nc->stream));
    if (recv_counts[g])
      NC(ncclRecv(r + (size_t)recv_offsets[g] * elem, (size_t)recv_counts[g] * elem, ncclUint8, g,
                  nc->comm, nc->stream));
  }
  NC(ncclGroupEnd());
  const int me = nc->rank; /* this rank's own block, a device copy */
  if (send_counts[me])
    smoe_cuda_copy_bytes(r + (size_t)recv_offsets[me] * elem, s + (size_t)send_offsets[me] * elem,
                         (size_t)send_counts[me] * elem);
}

#ifdef SMOE_REAL_DOUBLE
#define NCCL_REAL ncclFloat64
#else
#define NCCL_REAL ncclFloat32
#endif

void smoe_nccl_reduce_scatter(smoe_nccl_t *nc, const real *x, size_t lo, size_t hi, size_t chunk,
                              real *out) {
  const int G = nc->size, me = nc->rank;
  /* my part of [lo, hi): [a, b) of my block; peer q's part: [aq, bq) */
  size_t a = (size_t)me * chunk, b = a + chunk;
  a = a > lo ? a : lo, b = b < hi ? b : hi;
  const size_t n = b > a ? b - a : 0;
  real *st = stage(nc, (size_t)G * (n ? n : 1));
  NC(ncclGroupStart());
  for (int q = 0; q < G; q++) {
    if (q == me) continue;
    size_t aq = (size_t)q * chunk, bq = aq + chunk;
    aq = aq > lo ? aq : lo, bq = bq < hi ? bq : hi;
    if (bq > aq) NC(ncclSend(x + aq, bq - aq, NCCL_REAL, q, nc->comm, nc->stream));
    if (n) NC(ncclRecv(st + (size_t)q * n, n, NCCL_REAL, q, nc->comm, nc->stream));
  }
  NC(ncclGroupEnd());
  if (!n) return;
  /* the sum in rank order: out = x_0 + x_1 + ... (this rank's own from x) */
  real *dst = out + (a - (size_t)me * chunk);
  nc->ops->copy(dst, me == 0 ? x + a : st, n);
  for (int q = 1; q < G; q++) nc->ops->add(dst, q == me ? x + a : st + (size_t)q * n, n);
}

void smoe_nccl_allgather(smoe_nccl_t *nc, const void *send, void *recv, size_t bytes) {
  NC(ncclAllGather(send, recv, bytes, ncclUint8, nc->comm, nc->stream));
}

void smoe_nccl_allreduce_real(smoe_nccl_t *nc, real *x, size_t n) {
  if (!n) return;
  /* reduce-scatter in blocks of chunk, then all-gather: the ring's bytes
   * (its staging, about 2n elements, is not in the memory report) */
  const size_t G = (size_t)nc->size, chunk = (n + G - 1) / G;
  real *mine = stage(nc, G * chunk + (G + 1) * chunk) + G * chunk; /* after the slices */
  smoe_nccl_reduce_scatter(nc, x, 0, n, chunk, mine);
  real *all = mine + chunk;
  smoe_nccl_allgather(nc, mine, all, chunk * sizeof(real));
  nc->ops->copy(x, all, n);
}

int smoe_nccl_check(smoe_nccl_t *nc, char *err, size_t err_len) {
  ncclResult_t async = ncclSuccess;
  ncclResult_t r = ncclCommGetAsyncError(nc->comm, &async);
  if (r == ncclSuccess && async == ncclSuccess) return 0;
  snprintf(err, err_len, "NCCL (rank %d): %s", nc->rank,
           ncclGetErrorString(r != ncclSuccess ? r : async));
  return -1;
}
