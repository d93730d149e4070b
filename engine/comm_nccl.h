/* comm_nccl.h: the NCCL data plane behind comm.h (comm_mpi.c calls it when
 * every rank drives its own GPU; built with CUDA only). All calls queue on
 * the CUDA backend's stream, in order with its kernels; buffers are device
 * memory. Sums are deterministic: slices travel point to point and are added
 * in rank order (the same bits for a given G), never by NCCL's own float
 * reduction. */
#ifndef SMOE_COMM_NCCL_H
#define SMOE_COMM_NCCL_H

#include "backend.h"

enum { SMOE_NCCL_ID_BYTES = 128 };

typedef struct smoe_nccl smoe_nccl_t;

/* 1 when this host has at least `ranks_here` CUDA devices (one per rank) */
int smoe_nccl_usable(int ranks_here);
/* rank 0: a new communicator id (to broadcast); 0 or -1 with err */
int smoe_nccl_id(void *id, char *err, size_t err_len);
/* Joins the communicator of id as rank of size; NULL with err */
smoe_nccl_t *smoe_nccl_open(const void *id, int rank, int size, const smoe_ops_t *ops, char *err,
                            size_t err_len);
void smoe_nccl_close(smoe_nccl_t *nc);

/* comm.h's data plane (counts in elements of elem bytes, as there) */
void smoe_nccl_alltoallv(smoe_nccl_t *nc, const void *send, const int64_t *send_counts,
                         const int64_t *send_offsets, void *recv, const int64_t *recv_counts,
                         const int64_t *recv_offsets, size_t elem);
void smoe_nccl_reduce_scatter(smoe_nccl_t *nc, const real *x, size_t lo, size_t hi, size_t chunk,
                              real *out);
void smoe_nccl_allreduce_real(smoe_nccl_t *nc, real *x, size_t n);
void smoe_nccl_allgather(smoe_nccl_t *nc, const void *send, void *recv, size_t bytes);
/* 0, or -1 with NCCL's asynchronous error (a peer failed, a timeout) in err */
int smoe_nccl_check(smoe_nccl_t *nc, char *err, size_t err_len);

#endif
