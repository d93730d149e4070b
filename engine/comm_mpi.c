/* comm_mpi.c: the MPI backend of comm.h, and the world of one. The only
 * file that includes mpi.h. */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#ifdef SMOE_WITH_CUDA
#include "comm_nccl.h"
#endif

enum { REQ_BLOCK = 64 };

/* A host buffer that only grows. */
typedef struct {
  char *p;
  size_t cap;
} hostbuf_t;

/* A started collective's host staging (backend memory the host cannot
 * read): its send and receive bytes, and where the received ones go at the
 * wait (dst NULL: nothing to copy back). */
typedef struct {
  hostbuf_t buf;
  void *dst;
  size_t recv_at, recv_bytes;
} staged_t;

struct smoe_comm {
  int rank, size, node_size, node_rank;
  const smoe_ops_t *ops; /* the data plane's memory (smoe_comm_set_backend) */
  hostbuf_t stage[2];    /* blocking calls' staging: send, receive */
  staged_t *staged;      /* cap_reqs: the started collectives' staging */
#ifdef SMOE_WITH_CUDA
  smoe_nccl_t *nccl; /* the data plane on NCCL (every rank has its own GPU) */
#endif
  int mpi; /* MPI_Init was called */
  int64_t bytes[SMOE_PHASE_COUNT];
  int *counts; /* (4, G) an all-to-all-v's counts and offsets as MPI's ints, allocated once */
  /* the data plane's started collectives, until smoe_comm_wait_all: their
   * requests, and their MPI int counts (G each), which MPI may read until
   * then, in blocks of REQ_BLOCK requests that never move (only the array of
   * block pointers and the requests, plain handles, are reallocated); grown
   * when more are in flight than ever before, never shrunk */
  MPI_Request *reqs;
  int **count_blocks;
  int n_reqs, cap_reqs;
};

static const char *phase_names[SMOE_PHASE_COUNT] = {
    "dispatch", "combine", "dense_grad", "counts", "grad_to_shards", "weights_to_slots",
    "dense_weights", "checkpoint_copy", "shadow",
    "other"};
const char *smoe_phase_name(smoe_phase_t p) { return phase_names[p]; }

/* llm.c's mpiCheck: file, line and MPI's own message, then the whole job ends. */
#define mpi_check(call)                                                          \
  do {                                                                           \
    int rc_ = (call);                                                            \
    if (rc_ != MPI_SUCCESS) {                                                    \
      char msg_[MPI_MAX_ERROR_STRING];                                           \
      int len_ = 0;                                                              \
      MPI_Error_string(rc_, msg_, &len_);                                        \
      fprintf(stderr, "swiftmoe: MPI error at %s:%d: %s\n", __FILE__, __LINE__, msg_); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                              \
    }                                                                            \
  } while (0)

static int launched(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_ID",
                               "SMOE_FORCE_MPI"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i]) && *getenv(vars[i])) return 1;
  return 0;
}

int smoe_comm_launch_rank(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i]) && *getenv(vars[i])) return atoi(getenv(vars[i]));
  return 0;
}

smoe_comm_t *smoe_comm_local(void) {
  smoe_comm_t *c = xcalloc(1, sizeof *c);
  c->size = c->node_size = 1;
  return c;
}

smoe_comm_t *smoe_comm_init(int *argc, char ***argv) {
  smoe_comm_t *c = smoe_comm_local();
  if (!launched()) return c;
  int provided;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    fprintf(stderr, "swiftmoe: MPI_Init failed\n");
    exit(1);
  }
  c->mpi = 1;
  /* errors come back as codes, so mpi_check can report them */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c->size);
  MPI_Comm node;
  mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node));
  MPI_Comm_size(node, &c->node_size);
  MPI_Comm_rank(node, &c->node_rank);
  MPI_Comm_free(&node);
  c->counts = xmalloc(sizeof(int) * 4 * (size_t)c->size);
  return c;
}

static void host_free(smoe_comm_t *c, hostbuf_t *b);

void smoe_comm_finalize(smoe_comm_t *c) {
#ifdef SMOE_WITH_CUDA
  if (c) smoe_nccl_close(c->nccl);
#endif
  if (c && c->mpi) MPI_Finalize();
  for (int b = 0; c && b < c->cap_reqs / REQ_BLOCK; b++) free(c->count_blocks[b]);
  for (int i = 0; c && i < c->cap_reqs; i++) host_free(c, &c->staged[i].buf);
  if (c) free(c->counts), free(c->reqs), free(c->count_blocks), free(c->staged);
  if (c) host_free(c, &c->stage[0]), host_free(c, &c->stage[1]);
  free(c);
}

void smoe_comm_abort(smoe_comm_t *c, int code) {
  fflush(stdout);
  fflush(stderr);
  if (c && c->mpi && c->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

int smoe_comm_rank(const smoe_comm_t *c) { return c->rank; }
int smoe_comm_size(const smoe_comm_t *c) { return c->size; }
int smoe_comm_node_size(const smoe_comm_t *c) { return c->node_size; }
int smoe_comm_node_rank(const smoe_comm_t *c) { return c->node_rank; }

static void allreduce(smoe_comm_t *c, void *x, size_t n, size_t elem, MPI_Datatype type, MPI_Op op,
                      smoe_phase_t phase);

#ifdef SMOE_WITH_CUDA
/* NCCL when every rank of the job has a GPU of its own (ranks sharing one
 * stay on MPI, staged): the ranks agree, rank 0's id travels over MPI. */
static void nccl_start(smoe_comm_t *c) {
  int64_t own = smoe_nccl_usable(c->node_size);
  allreduce(c, &own, 1, sizeof own, MPI_INT64_T, MPI_MIN, SMOE_PHASE_OTHER);
  if (!own) return;
  char id[SMOE_NCCL_ID_BYTES] = {0}, err[256] = "";
  int ok = c->rank != 0 || smoe_nccl_id(id, err, sizeof err) == 0;
  mpi_check(MPI_Bcast(id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
  if (ok) c->nccl = smoe_nccl_open(id, c->rank, c->size, c->ops, err, sizeof err);
  if (!c->nccl) {
    fprintf(stderr, "swiftmoe: [rank %d] %s\n", c->rank, err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}
#endif

void smoe_comm_set_backend(smoe_comm_t *c, const smoe_ops_t *ops) {
  c->ops = ops;
#ifdef SMOE_WITH_CUDA
  if (c->size > 1 && !c->nccl && strcmp(ops->name, "cuda") == 0) nccl_start(c);
#endif
}

const char *smoe_comm_data_plane(const smoe_comm_t *c) {
#ifdef SMOE_WITH_CUDA
  if (c->nccl) return "NCCL";
#endif
  return c->ops && !c->ops->host_memory ? "MPI, staged through host memory" : "MPI";
}

/* the NCCL data plane, when there is one */
#ifdef SMOE_WITH_CUDA
#define NCCL(c) ((c)->nccl)
#else
#define NCCL(c) 0
#define smoe_nccl_allreduce_real(...) abort()
#define smoe_nccl_alltoallv(...) abort()
#define smoe_nccl_allgather(...) abort()
#define smoe_nccl_reduce_scatter(...) abort()
#endif

/* 1 when data-plane buffers must be staged through host memory */
static int staging(const smoe_comm_t *c) { return c->ops && !c->ops->host_memory; }

/* b grown to hold bytes, page-locked for the backend's copies (a GPU's) */
static void *host(smoe_comm_t *c, hostbuf_t *b, size_t bytes) {
  if (bytes > b->cap) {
    if (b->p) c->ops->host_pin(b->p, b->cap, 0);
    free(b->p);
    b->cap = bytes > 2 * b->cap ? bytes : 2 * b->cap;
    b->p = xmalloc(b->cap);
    c->ops->host_pin(b->p, b->cap, 1);
  }
  return b->p;
}

static void host_free(smoe_comm_t *c, hostbuf_t *b) {
  if (b->p && c->ops) c->ops->host_pin(b->p, b->cap, 0);
  free(b->p);
}

/* memmove for data-plane buffers (a world of one) */
static void move(smoe_comm_t *c, void *dst, const void *src, size_t bytes) {
  if (!staging(c))
    memmove(dst, src, bytes);
  else if (bytes % sizeof(real) == 0)
    c->ops->copy(dst, src, bytes / sizeof(real));
  else {
    void *h = host(c, &c->stage[0], bytes);
    c->ops->to_host(h, src, bytes);
    c->ops->to_device(dst, h, bytes);
  }
}

/* Ring all-reduce volume per rank: 2 (G-1)/G of the buffer. */
static void count_allreduce(smoe_comm_t *c, size_t bytes, smoe_phase_t phase) {
  c->bytes[phase] += (int64_t)(2.0 * (double)bytes * (c->size - 1) / c->size);
}

static void allreduce(smoe_comm_t *c, void *x, size_t n, size_t elem, MPI_Datatype type, MPI_Op op,
                      smoe_phase_t phase) {
  if (c->size == 1) return;
  count_allreduce(c, n * elem, phase);
  const size_t chunk = (size_t)1 << 30; /* MPI counts are int */
  for (size_t i = 0; i < n; i += chunk) {
    int m = (int)(n - i < chunk ? n - i : chunk);
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * elem, m, type, op, MPI_COMM_WORLD));
  }
}

#ifdef SMOE_REAL_DOUBLE
#define MPI_REAL_T MPI_DOUBLE
#else
#define MPI_REAL_T MPI_FLOAT
#endif

void smoe_comm_allreduce_real(smoe_comm_t *c, real *x, size_t n, smoe_phase_t phase) {
  if (c->size == 1) return;
  if (NCCL(c)) {
    count_allreduce(c, n * sizeof(real), phase);
    smoe_nccl_allreduce_real(c->nccl, x, n);
    return;
  }
  if (!staging(c)) {
    allreduce(c, x, n, sizeof(real), MPI_REAL_T, MPI_SUM, phase);
    return;
  }
  real *h = host(c, &c->stage[0], smoe_mul(n, sizeof(real)));
  c->ops->to_host(h, x, n * sizeof(real));
  allreduce(c, h, n, sizeof(real), MPI_REAL_T, MPI_SUM, phase);
  c->ops->to_device(x, h, n * sizeof(real));
}
void smoe_comm_allreduce_f64(smoe_comm_t *c, double *x, size_t n, smoe_phase_t phase) {
  allreduce(c, x, n, sizeof(double), MPI_DOUBLE, MPI_SUM, phase);
}
void smoe_comm_allreduce_i64(smoe_comm_t *c, int64_t *x, size_t n, smoe_phase_t phase) {
  allreduce(c, x, n, sizeof(int64_t), MPI_INT64_T, MPI_SUM, phase);
}
void smoe_comm_allreduce_max_i64(smoe_comm_t *c, int64_t *x, size_t n, smoe_phase_t phase) {
  allreduce(c, x, n, sizeof(int64_t), MPI_INT64_T, MPI_MAX, phase);
}

int64_t smoe_comm_min_i64(smoe_comm_t *c, int64_t v, smoe_phase_t phase) {
  allreduce(c, &v, 1, sizeof(int64_t), MPI_INT64_T, MPI_MIN, phase);
  return v;
}

/* Gathers `bytes` of send from every rank into recv, in rank order: on
 * every rank (all = 1) or on rank 0 only. */
static void gather(smoe_comm_t *c, const void *send, void *recv, size_t bytes, int all,
                   smoe_phase_t phase) {
  if (c->size == 1) {
    memmove(recv, send, bytes);
    return;
  }
  if (bytes > (size_t)1 << 30) {
    fprintf(stderr, "swiftmoe: internal error: %s of %zu bytes per rank\n",
            all ? "all-gather" : "gather", bytes);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (all)
    c->bytes[phase] += (int64_t)bytes * (c->size - 1);
  else if (c->rank != 0)
    c->bytes[phase] += (int64_t)bytes;
  if (all)
    mpi_check(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD));
  else
    mpi_check(MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD));
}

void smoe_comm_allgather(smoe_comm_t *c, const void *send, void *recv, size_t bytes,
                         smoe_phase_t phase) {
  gather(c, send, recv, bytes, 1, phase);
}

void smoe_comm_gather(smoe_comm_t *c, const void *send, void *recv, size_t bytes,
                      smoe_phase_t phase) {
  gather(c, send, recv, bytes, 0, phase);
}

/* MPI's counts and displacements are int: count in units of `elem` bytes. */
static int fits(const int64_t *counts, const int64_t *offsets, int n) {
  for (int g = 0; g < n; g++)
    if (counts[g] < 0 || counts[g] > INT32_MAX || offsets[g] < 0 || offsets[g] > INT32_MAX)
      return 0;
  return 1;
}

void smoe_comm_alltoallv(smoe_comm_t *c, const void *send, const int64_t *send_counts,
                         const int64_t *send_offsets, void *recv, const int64_t *recv_counts,
                         const int64_t *recv_offsets, size_t elem, smoe_phase_t phase) {
  if (c->size == 1) {
    move(c, (char *)recv + (size_t)recv_offsets[0] * elem,
         (const char *)send + (size_t)send_offsets[0] * elem, (size_t)send_counts[0] * elem);
    return;
  }
  const int G = c->size;
  if (!fits(send_counts, send_offsets, G) || !fits(recv_counts, recv_offsets, G)) {
    fprintf(stderr, "swiftmoe: internal error: all-to-all counts exceed MPI's int range\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int *ci = c->counts;
  for (int g = 0; g < G; g++) {
    ci[g] = (int)send_counts[g], ci[G + g] = (int)send_offsets[g];
    ci[2 * G + g] = (int)recv_counts[g], ci[3 * G + g] = (int)recv_offsets[g];
    if (g != c->rank) c->bytes[phase] += send_counts[g] * (int64_t)elem;
  }
  if (NCCL(c)) {
    smoe_nccl_alltoallv(c->nccl, send, send_counts, send_offsets, recv, recv_counts, recv_offsets,
                        elem);
    return;
  }
  void *hsend = (void *)send, *hrecv = recv;
  if (staging(c)) { /* the extents of both buffers through host memory */
    size_t ns = 0, nr = 0;
    for (int g = 0; g < G; g++) {
      ns = ns > (size_t)(send_offsets[g] + send_counts[g]) ? ns : (size_t)(send_offsets[g] + send_counts[g]);
      nr = nr > (size_t)(recv_offsets[g] + recv_counts[g]) ? nr : (size_t)(recv_offsets[g] + recv_counts[g]);
    }
    hsend = host(c, &c->stage[0], ns * elem + 1);
    hrecv = host(c, &c->stage[1], nr * elem + 1);
    c->ops->to_host(hsend, send, ns * elem);
  }
  MPI_Datatype row;
  mpi_check(MPI_Type_contiguous((int)elem, MPI_BYTE, &row));
  mpi_check(MPI_Type_commit(&row));
  mpi_check(MPI_Alltoallv(hsend, ci, ci + G, row, hrecv, ci + 2 * G, ci + 3 * G, row,
                          MPI_COMM_WORLD));
  MPI_Type_free(&row);
  for (int g = 0; hrecv != recv && g < G; g++) /* only the ranges received */
    c->ops->to_device((char *)recv + (size_t)recv_offsets[g] * elem,
                      (char *)hrecv + (size_t)recv_offsets[g] * elem, (size_t)recv_counts[g] * elem);
}

/* Room for one more started collective: its G ints of counts (the request
 * is c->reqs[c->n_reqs], taken by the caller's c->n_reqs++). */
static int *next_request(smoe_comm_t *c) {
  if (c->n_reqs == c->cap_reqs) {
    const int b = c->cap_reqs / REQ_BLOCK;
    c->cap_reqs += REQ_BLOCK;
    c->reqs = realloc(c->reqs, sizeof(MPI_Request) * (size_t)c->cap_reqs);
    c->count_blocks = realloc(c->count_blocks, sizeof(int *) * (size_t)(b + 1));
    c->staged = realloc(c->staged, sizeof(staged_t) * (size_t)c->cap_reqs);
    if (!c->reqs || !c->count_blocks || !c->staged) {
      fprintf(stderr, "swiftmoe: out of memory for %d collectives in flight\n", c->cap_reqs);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    c->count_blocks[b] = xmalloc(sizeof(int) * REQ_BLOCK * (size_t)c->size);
    memset(c->staged + c->cap_reqs - REQ_BLOCK, 0, sizeof(staged_t) * REQ_BLOCK);
  }
  c->staged[c->n_reqs].dst = NULL;
  return c->count_blocks[c->n_reqs / REQ_BLOCK] + (size_t)(c->n_reqs % REQ_BLOCK) * c->size;
}

void smoe_comm_allgather_start(smoe_comm_t *c, const void *send, void *recv, size_t bytes,
                               smoe_phase_t phase) {
  if (c->size == 1) {
    move(c, recv, send, bytes);
    return;
  }
  if (bytes > (size_t)1 << 30) {
    fprintf(stderr, "swiftmoe: internal error: all-gather of %zu bytes per rank\n", bytes);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  c->bytes[phase] += (int64_t)bytes * (c->size - 1);
  if (NCCL(c)) {
    smoe_nccl_allgather(c->nccl, send, recv, bytes);
    return;
  }
  next_request(c);
  const void *hsend = send;
  void *hrecv = recv;
  if (staging(c)) {
    staged_t *st = &c->staged[c->n_reqs];
    char *h = host(c, &st->buf, bytes * (size_t)(c->size + 1));
    c->ops->to_host(h, send, bytes);
    hsend = h, hrecv = h + bytes;
    st->dst = recv, st->recv_at = bytes, st->recv_bytes = bytes * (size_t)c->size;
  }
  mpi_check(MPI_Iallgather(hsend, (int)bytes, MPI_BYTE, hrecv, (int)bytes, MPI_BYTE,
                           MPI_COMM_WORLD, &c->reqs[c->n_reqs]));
  c->n_reqs++;
}

void smoe_comm_reduce_scatter_start(smoe_comm_t *c, const real *x, size_t lo, size_t hi,
                                    size_t chunk, real *out, smoe_phase_t phase) {
  const size_t mine = (size_t)c->rank * chunk;
  if (c->size == 1) { /* the range is this rank's */
    move(c, out + lo, x + lo, (hi - lo) * sizeof(real));
    return;
  }
  int *counts = next_request(c);
  for (int q = 0; q < c->size; q++) { /* [lo, hi) inside rank q's block */
    size_t a = (size_t)q * chunk, b = a + chunk;
    a = a > lo ? a : lo, b = b < hi ? b : hi;
    counts[q] = b > a ? (int)(b - a) : 0;
    if (q != c->rank) c->bytes[phase] += (int64_t)counts[q] * (int64_t)sizeof(real);
  }
  if (hi - lo > (size_t)1 << 30) {
    fprintf(stderr, "swiftmoe: internal error: reduce-scatter of %zu elements\n", hi - lo);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (NCCL(c)) {
    smoe_nccl_reduce_scatter(c->nccl, x, lo, hi, chunk, out);
    return;
  }
  real *at = counts[c->rank] ? out + (lo > mine ? lo - mine : 0) : out; /* in bounds */
  const real *hsend = x + lo;
  real *hrecv = at;
  if (staging(c)) {
    staged_t *st = &c->staged[c->n_reqs];
    const size_t sb = (hi - lo) * sizeof(real), rb = (size_t)counts[c->rank] * sizeof(real);
    char *h = host(c, &st->buf, sb + rb + sizeof(real));
    c->ops->to_host(h, x + lo, sb);
    hsend = (const real *)h, hrecv = (real *)(h + sb);
    st->dst = at, st->recv_at = sb, st->recv_bytes = rb;
  }
  mpi_check(MPI_Ireduce_scatter(hsend, hrecv, counts, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD,
                                &c->reqs[c->n_reqs]));
  c->n_reqs++;
}

void smoe_comm_wait_all(smoe_comm_t *c) {
#ifdef SMOE_WITH_CUDA
  char err[256];
  if (c->nccl && smoe_nccl_check(c->nccl, err, sizeof err) != 0) {
    fprintf(stderr, "swiftmoe: [rank %d] %s\n", c->rank, err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
#endif
  if (c->n_reqs) mpi_check(MPI_Waitall(c->n_reqs, c->reqs, MPI_STATUSES_IGNORE));
  for (int i = 0; i < c->n_reqs; i++) { /* staged results to the backend's memory */
    staged_t *st = &c->staged[i];
    if (st->dst) c->ops->to_device(st->dst, st->buf.p + st->recv_at, st->recv_bytes);
  }
  c->n_reqs = 0;
}

void smoe_comm_barrier(smoe_comm_t *c) {
  if (c->size > 1) mpi_check(MPI_Barrier(MPI_COMM_WORLD));
}

void smoe_comm_bytes(const smoe_comm_t *c, int64_t out[SMOE_PHASE_COUNT]) {
  memcpy(out, c->bytes, sizeof c->bytes);
}

void smoe_comm_reset_bytes(smoe_comm_t *c) { memset(c->bytes, 0, sizeof c->bytes); }

/* --- messages to one rank (checkpoint copies) --------------------------------- */

enum { MSG_TAG_HEAD = 7001, MSG_TAG_BODY = 7002 };
#define MSG_PIECE ((size_t)1 << 30)

struct smoe_comm_msg {
  int peer, recv, started; /* started: a receive's header arrived, its pieces posted */
  uint64_t size;           /* the header */
  char *buf;               /* a receive's bytes (n + 1 allocated) */
  MPI_Request *reqs;       /* header (a send's) and pieces */
  int n_reqs;
};

/* The requests of the pieces of buf (size bytes), after reqs[first]. */
static void msg_pieces(smoe_comm_msg_t *m, int first, const void *buf) {
  size_t pieces = (m->size + MSG_PIECE - 1) / MSG_PIECE;
  m->reqs = xmalloc(sizeof(MPI_Request) * (pieces + 1));
  m->n_reqs = first;
  for (size_t i = 0; i < pieces; i++) {
    size_t at = i * MSG_PIECE, len = m->size - at < MSG_PIECE ? m->size - at : MSG_PIECE;
    char *p = (char *)buf + at;
    if (m->recv)
      mpi_check(MPI_Irecv(p, (int)len, MPI_BYTE, m->peer, MSG_TAG_BODY, MPI_COMM_WORLD,
                          &m->reqs[m->n_reqs++]));
    else
      mpi_check(MPI_Isend(p, (int)len, MPI_BYTE, m->peer, MSG_TAG_BODY, MPI_COMM_WORLD,
                          &m->reqs[m->n_reqs++]));
  }
}

smoe_comm_msg_t *smoe_comm_send_start(smoe_comm_t *c, int to, const void *buf, size_t n,
                                      smoe_phase_t phase) {
  if (!c->mpi || c->size < 2) return NULL;
  smoe_comm_msg_t *m = xcalloc(1, sizeof *m);
  m->peer = to, m->size = n, m->started = 1;
  msg_pieces(m, 1, buf);
  mpi_check(MPI_Isend(&m->size, 8, MPI_BYTE, to, MSG_TAG_HEAD, MPI_COMM_WORLD, &m->reqs[0]));
  c->bytes[phase] += (int64_t)n + 8;
  return m;
}

smoe_comm_msg_t *smoe_comm_recv_start(smoe_comm_t *c, int from) {
  if (!c->mpi || c->size < 2) return NULL;
  smoe_comm_msg_t *m = xcalloc(1, sizeof *m);
  m->peer = from, m->recv = 1;
  return m;
}

int smoe_comm_msg_test(smoe_comm_t *c, smoe_comm_msg_t *m, void **buf, size_t *n) {
  (void)c;
  if (m->recv && !m->started) {
    int flag = 0;
    mpi_check(MPI_Iprobe(m->peer, MSG_TAG_HEAD, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
    if (!flag) return 0;
    mpi_check(MPI_Recv(&m->size, 8, MPI_BYTE, m->peer, MSG_TAG_HEAD, MPI_COMM_WORLD,
                       MPI_STATUS_IGNORE));
    m->buf = xmalloc((size_t)m->size + 1);
    m->started = 1;
    msg_pieces(m, 0, m->buf);
  }
  int done = 0;
  mpi_check(MPI_Testall(m->n_reqs, m->reqs, &done, MPI_STATUSES_IGNORE));
  if (!done) return 0;
  if (m->recv) *buf = m->buf, *n = (size_t)m->size;
  free(m->reqs);
  free(m);
  return 1;
}

void smoe_comm_msg_wait(smoe_comm_t *c, smoe_comm_msg_t *m, void **buf, size_t *n, double *wait_s) {
  double t0 = smoe_now();
  while (!smoe_comm_msg_test(c, m, buf, n)) nanosleep(&(struct timespec){0, 200000}, NULL);
  if (wait_s) *wait_s += smoe_now() - t0;
}
