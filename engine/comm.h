/* comm.h: the communication layer. The only interface the engine uses to
 * talk to other ranks; comm_mpi.c is the only file that includes mpi.h (an
 * NCCL backend for the GPU path will sit behind the same calls).
 *
 * Every call counts the bytes this rank sends, under a named phase
 * ("dispatch", "combine", "dense_grad", ...), for metrics.jsonl's `bytes`.
 * A world of one process (no launcher) needs no MPI at all: collectives
 * become copies and MPI is never initialised. */
#ifndef SMOE_COMM_H
#define SMOE_COMM_H

#include "backend.h"
#include "common.h"

typedef enum {
  SMOE_PHASE_DISPATCH = 0, /* token activations to expert slots (forward and backward) */
  SMOE_PHASE_COMBINE,      /* expert outputs / input gradients back to the tokens */
  SMOE_PHASE_DENSE_GRAD,   /* data-parallel dense gradients: all-reduce, or reduce-scatter (sharded) */
  SMOE_PHASE_COUNTS,       /* routing counts and router statistics */
  SMOE_PHASE_GRAD_TO_SHARDS,   /* expert gradients to the ranks owning their optimizer shards */
  SMOE_PHASE_WEIGHTS_TO_SLOTS, /* updated expert weights to the next placement's slots */
  SMOE_PHASE_DENSE_WEIGHTS,    /* updated dense slices all-gathered (sharded dense optimizer) */
  SMOE_PHASE_CKPT_COPY,    /* a checkpoint's stored bytes to the rank that keeps its copy */
  SMOE_PHASE_SHADOW,       /* a step's shadows' weights from the shards (placement.shadow_slots) */
  SMOE_PHASE_OTHER,        /* losses, norms, evaluation, checkpoint gathers */
  SMOE_PHASE_COUNT
} smoe_phase_t;

/* Stable names used as metrics.jsonl keys. */
const char *smoe_phase_name(smoe_phase_t p);

typedef struct smoe_comm smoe_comm_t;

/* Joins the job: MPI when launched by mpirun/srun (or forced with
 * SMOE_FORCE_MPI=1), else a world of one. Exits the process with a message
 * if MPI cannot start. */
smoe_comm_t *smoe_comm_init(int *argc, char ***argv);
/* This process's rank as its launcher announced it (before init; 0 when not
 * launched), so that only rank 0 reports a usage error. */
int smoe_comm_launch_rank(void);

/* A world of one process, without MPI (for tools and tests). */
smoe_comm_t *smoe_comm_local(void);
/* Leaves the job (MPI_Finalize when MPI was started). */
void smoe_comm_finalize(smoe_comm_t *c);
/* Ends the whole job with `code` (MPI_Abort): a failing rank must not leave
 * the others waiting in a collective. */
void smoe_comm_abort(smoe_comm_t *c, int code) __attribute__((noreturn));

int smoe_comm_rank(const smoe_comm_t *c);
int smoe_comm_size(const smoe_comm_t *c);
/* Ranks on this rank's node (they share its cores), and this rank's place
 * among them (its GPU when each rank has one). */
int smoe_comm_node_size(const smoe_comm_t *c);
int smoe_comm_node_rank(const smoe_comm_t *c);

/* The data plane (smoe_comm_allreduce_real, _alltoallv, _reduce_scatter_start,
 * _allgather_start) moves buffers of this backend. When its memory is the
 * host's (the CPU) MPI reads and writes them in place; otherwise (a GPU) each
 * call stages them through page-locked host buffers of its own with the
 * backend's copies, except on NCCL: with the CUDA backend, when every rank
 * of the job drives a GPU of its own, the data plane runs on NCCL
 * (comm_nccl.h), queued on the backend's stream. Default: the CPU's. The
 * other calls take host memory. */
void smoe_comm_set_backend(smoe_comm_t *c, const smoe_ops_t *ops);
/* "MPI", "MPI, staged through host memory" or "NCCL", for the run's header */
const char *smoe_comm_data_plane(const smoe_comm_t *c);

/* In-place sums over all ranks. */
void smoe_comm_allreduce_real(smoe_comm_t *c, real *x, size_t n, smoe_phase_t phase);
void smoe_comm_allreduce_f64(smoe_comm_t *c, double *x, size_t n, smoe_phase_t phase);
void smoe_comm_allreduce_i64(smoe_comm_t *c, int64_t *x, size_t n, smoe_phase_t phase);
/* In-place maximum over all ranks. */
void smoe_comm_allreduce_max_i64(smoe_comm_t *c, int64_t *x, size_t n, smoe_phase_t phase);
/* The minimum of v over ranks (every rank calls it). */
int64_t smoe_comm_min_i64(smoe_comm_t *c, int64_t v, smoe_phase_t phase);

/* On rank 0, recv (size * bytes) = every rank's `bytes` of send, in rank
 * order; recv is not touched on the other ranks (may be NULL there). */
void smoe_comm_gather(smoe_comm_t *c, const void *send, void *recv, size_t bytes,
                      smoe_phase_t phase);
/* recv (size * bytes) = every rank's `bytes` of send, in rank order. */
void smoe_comm_allgather(smoe_comm_t *c, const void *send, void *recv, size_t bytes,
                         smoe_phase_t phase);

/* All-to-all with per-peer element counts: this rank sends send_counts[g]
 * elements of `elem` bytes, starting at send_offsets[g] elements into send, to
 * rank g, and receives recv_counts[g] elements from rank g at recv_offsets[g].
 * The counts must agree pairwise (the caller derives both from one
 * all-gathered table). */
void smoe_comm_alltoallv(smoe_comm_t *c, const void *send, const int64_t *send_counts,
                         const int64_t *send_offsets, void *recv, const int64_t *recv_counts,
                         const int64_t *recv_offsets, size_t elem, smoe_phase_t phase);

/* The data plane's start/wait: a started collective proceeds while the
 * caller computes (MPI's nonblocking collectives on the CPU; NCCL on a
 * stream on the GPU); its buffers must not be touched until
 * smoe_comm_wait_all. Every rank starts the same collectives in the same
 * order.
 *
 * Elements [lo, hi) of x (a vector of size * chunk) summed over ranks; the
 * part inside this rank's block [rank * chunk, (rank + 1) * chunk) lands at
 * the same place in out (chunk elements, block-relative). Started ranges
 * that partition the vector amount to one reduce-scatter of it. */
void smoe_comm_reduce_scatter_start(smoe_comm_t *c, const real *x, size_t lo, size_t hi,
                                    size_t chunk, real *out, smoe_phase_t phase);
/* recv (size * bytes) = every rank's `bytes` of send, in rank order. */
void smoe_comm_allgather_start(smoe_comm_t *c, const void *send, void *recv, size_t bytes,
                               smoe_phase_t phase);
/* Waits for every started collective. */
void smoe_comm_wait_all(smoe_comm_t *c);

void smoe_comm_barrier(smoe_comm_t *c);

/* Messages of any size between two ranks on the control plane (host
 * memory), sent and received without blocking: a checkpoint's copy to the
 * rank that keeps it. A message is a header (its size) and the bytes in
 * pieces of at most 1 GiB (MPI counts are ints); messages between two ranks
 * arrive in the order sent. Nothing of it exists in a world of one (NULL).
 *
 * send_start: buf (n bytes) to rank `to`; buf must stay untouched until the
 * message tests complete. recv_start: a message from rank `from`, whatever
 * its size (allocated when its header arrives). msg_test: 1 when the message
 * is complete (freed then; a receive's bytes in *buf, malloc'd, owned by the
 * caller, and *n), 0 not yet; it also moves MPI's progress along. */
typedef struct smoe_comm_msg smoe_comm_msg_t;
smoe_comm_msg_t *smoe_comm_send_start(smoe_comm_t *c, int to, const void *buf, size_t n,
                                      smoe_phase_t phase);
smoe_comm_msg_t *smoe_comm_recv_start(smoe_comm_t *c, int from);
int smoe_comm_msg_test(smoe_comm_t *c, smoe_comm_msg_t *m, void **buf, size_t *n);
/* Tests until complete (a blocking send or receive; seconds waited in *wait_s
 * if not NULL). */
void smoe_comm_msg_wait(smoe_comm_t *c, smoe_comm_msg_t *m, void **buf, size_t *n, double *wait_s);

/* Bytes this rank has sent per phase since the last reset. */
void smoe_comm_bytes(const smoe_comm_t *c, int64_t out[SMOE_PHASE_COUNT]);
void smoe_comm_reset_bytes(smoe_comm_t *c);

#endif
