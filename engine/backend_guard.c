/* backend_guard.c: the guard backend (training.device = guard): the CPU's
 * ops, on memory the host cannot touch between ops. Every allocation comes
 * from one reserved region that is PROT_NONE except while an op of this
 * table (or a to_device/to_host copy) runs, so engine code that reads or
 * writes backend memory directly, as it could not on a GPU, dies at once
 * with SIGSEGV at the line that did it. Slow (two mprotect calls per op);
 * for tests. Ops and copies run one at a time (a mutex), whatever the
 * thread. Checkpoint staging copies are held back, as a slow copy on a
 * GPU's side stream would be, until stage_fence or half a second into
 * stage_wait: a writer that reads the staging buffer before stage_wait, or
 * a step that changes the state before its stage_fence, writes a wrong
 * checkpoint. */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend.h"

static char *base;
static size_t used, reserved;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Every pointer an op gets for backend memory must be the guard's (NULL
 * where the op allows it): host memory passed where a GPU needs its own
 * would be read by the CPU's op without complaint, and fault on a GPU. */
static void owned(const char *op, const void *const *p, int n) {
  for (int i = 0; i < n; i++)
    if (p[i] && ((const char *)p[i] < base || (const char *)p[i] >= base + used)) {
      fprintf(stderr, "swiftmoe: guard backend: %s: argument %d (%p) is not backend memory\n", op,
              i + 1, p[i]);
      abort();
    }
}


static void set_access(int open) {
  if (used && mprotect(base, used, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
    perror("swiftmoe: guard backend: mprotect");
    abort();
  }
}

static void *guard_alloc(size_t bytes) {
  const size_t page = 4096, need = (bytes + page - 1) / page * page + page;
  pthread_mutex_lock(&lock);
  if (!base) {
    reserved = (size_t)1 << 40; /* address space only: pages appear when touched */
    base = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      perror("swiftmoe: guard backend: mmap");
      abort();
    }
  }
  if (need > reserved - used) {
    fprintf(stderr, "swiftmoe: guard backend: out of its %zu reserved bytes\n", reserved);
    abort();
  }
  void *p = base + used; /* fresh anonymous pages are zero */
  used += need;
  set_access(0);
  pthread_mutex_unlock(&lock);
  return p;
}

/* memory is not reused: every address stays unique for the process */
static void guard_free(void *p) {
  (void)p;
}

static void copy_bytes(const char *op, const void *own, void *dst, const void *src,
                       size_t bytes) {
  pthread_mutex_lock(&lock);
  owned(op, &own, 1);
  set_access(1);
  memmove(dst, src, bytes);
  set_access(0);
  pthread_mutex_unlock(&lock);
}

static void guard_to_device(void *dst, const void *src, size_t bytes) {
  copy_bytes("to_device", dst, dst, src, bytes);
}

static void guard_to_host(void *dst, const void *src, size_t bytes) {
  copy_bytes("to_host", src, dst, src, bytes);
}

/* staging copies queued and not yet done (a checkpoint has 9 regions) */
enum { MAX_STAGED = 64 };
static struct {
  void *dst;
  const void *src;
  size_t bytes;
} staged[MAX_STAGED];
static int n_staged;

static void guard_stage_copy(void *dst, const void *src, size_t bytes) {
  pthread_mutex_lock(&lock);
  owned("stage_copy", &src, 1);
  if (n_staged == MAX_STAGED) {
    fprintf(stderr, "swiftmoe: guard backend: more than %d staging copies queued\n", MAX_STAGED);
    abort();
  }
  staged[n_staged].dst = dst, staged[n_staged].src = src, staged[n_staged].bytes = bytes;
  n_staged++;
  pthread_mutex_unlock(&lock);
}

/* the queued copies, now (the lock held) */
static void flush_staged(void) {
  set_access(1);
  for (int i = 0; i < n_staged; i++) memcpy(staged[i].dst, staged[i].src, staged[i].bytes);
  n_staged = 0;
  set_access(0);
}

static pthread_cond_t fenced = PTHREAD_COND_INITIALIZER;

static void guard_stage_fence(void) {
  pthread_mutex_lock(&lock);
  flush_staged();
  pthread_cond_broadcast(&fenced);
  pthread_mutex_unlock(&lock);
}

/* A slow copy: the queued copies land at the next fence, or after half a
 * second when none comes (the last checkpoint; a synchronous write), so a
 * step that changed the state without its fence would be caught. */
static void guard_stage_wait(void) {
  pthread_mutex_lock(&lock);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += 500000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  while (n_staged > 0 && pthread_cond_timedwait(&fenced, &lock, &until) == 0) {
  }
  flush_staged();
  pthread_mutex_unlock(&lock);
}

static void guard_host_pin(void *p, size_t bytes, int on) {
  (void)p, (void)bytes, (void)on;
}

#define UNPACK(...) __VA_ARGS__
/* G(ret, op, (params), (args), (backend pointers)): the CPU's op between
 * open and close, its backend pointers checked */
#define G(ret, op, params, args, ptrs)                                     \
  static ret guard_##op params {                                          \
    const void *p_[] = {UNPACK ptrs};                                     \
    pthread_mutex_lock(&lock);                                            \
    owned(#op, p_, (int)(sizeof p_ / sizeof p_[0]));                      \
    set_access(1);                                                        \
    ret r_ = smoe_ops_cpu.op args;                                        \
    set_access(0);                                                        \
    pthread_mutex_unlock(&lock);                                          \
    return r_;                                                            \
  }
#define GV(op, params, args, ptrs)                                         \
  static void guard_##op params {                                         \
    const void *p_[] = {UNPACK ptrs};                                     \
    pthread_mutex_lock(&lock);                                            \
    owned(#op, p_, (int)(sizeof p_ / sizeof p_[0]));                      \
    set_access(1);                                                        \
    smoe_ops_cpu.op args;                                                 \
    set_access(0);                                                        \
    pthread_mutex_unlock(&lock);                                          \
  }

// clang-format off
GV(fill, (real *x, real v, size_t n), (x, v, n), (x))
GV(copy, (real *d, const real *s, size_t n), (d, s, n), (d, s))
GV(add, (real *y, const real *x, size_t n), (y, x, n), (y, x))
GV(gemm, (int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda, const real *B,
          int ldb, real beta, real *C, int ldc), (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
   (A, B, C))
GV(matmul_forward, (real *o, const real *i, const real *w, int N, int C, int OC), (o, i, w, N, C, OC),
   (o, i, w))
GV(matmul_backward, (real *di, real *dw, const real *dout, const real *i, const real *w, int N, int C,
                     int OC), (di, dw, dout, i, w, N, C, OC), (di, dw, dout, i, w))
GV(embedding_forward, (real *o, const int32_t *t, const real *tab, int N, int D), (o, t, tab, N, D),
   (o, t, tab))
GV(embedding_backward, (real *dt, const real *dout, const int32_t *t, int N, int D, int V),
   (dt, dout, t, N, D, V), (dt, dout, t))
GV(rmsnorm_forward, (real *o, real *rs, const real *i, const real *w, int N, int D, double eps),
   (o, rs, i, w, N, D, eps), (o, rs, i, w))
GV(rmsnorm_backward, (real *di, real *dw, const real *dout, const real *i, const real *w,
                      const real *rs, int N, int D, smoe_arena_t *a), (di, dw, dout, i, w, rs, N, D, a),
   (di, dw, dout, i, w, rs))
GV(rope_forward, (real *x, const real *c, const real *s, int N, int T, int nh, int d),
   (x, c, s, N, T, nh, d), (x, c, s))
GV(rope_backward, (real *x, const real *c, const real *s, int N, int T, int nh, int d),
   (x, c, s, N, T, nh, d), (x, c, s))
GV(attention_forward, (real *o, real *att, const real *q, const real *k, const real *v, int B, int T,
                       int H, int Hkv, int d), (o, att, q, k, v, B, T, H, Hkv, d), (o, att, q, k, v))
GV(attention_decode, (real *o, real *att, const real *q, const real *k, const real *v, int n, int H,
                      int Hkv, int d), (o, att, q, k, v, n, H, Hkv, d), (o, att, q, k, v))
GV(attention_backward, (real *dq, real *dk, real *dv, const real *dout, const real *att,
                        const real *q, const real *k, const real *v, int B, int T, int H, int Hkv,
                        int d, smoe_arena_t *a), (dq, dk, dv, dout, att, q, k, v, B, T, H, Hkv, d, a),
   (dq, dk, dv, dout, att, q, k, v))
G(double, crossentropy, (real *l, const int32_t *t, int N, int V, real s, int *nv,
                         smoe_arena_t *a), (l, t, N, V, s, nv, a), (l, t))
GV(router_forward, (real *p, real *lse, int32_t *idx, real *gw, const real *bias, int N, int E,
                    int K), (p, lse, idx, gw, bias, N, E, K), (p, lse, idx, gw, bias))
GV(router_stats, (int64_t *cc, double *ps, double *zs, const real *p, const real *lse,
                  const int32_t *idx, int N, int E, int K), (cc, ps, zs, p, lse, idx, N, E, K),
   (p, lse, idx))
GV(router_backward, (real *dl, const real *p, const real *lse, const int32_t *idx, const real *gw,
                     const real *dgw, const real *aux, real z, int N, int E, int K),
   (dl, p, lse, idx, gw, dgw, aux, z, N, E, K), (dl, p, lse, idx, gw, dgw, aux))
GV(moe_gather, (real *xe, const real *x, const int *pos, int N, int K, int D), (xe, x, pos, N, K, D),
   (xe, x, pos))
GV(moe_gather_backward, (real *dx, const real *dxe, const int *pos, int N, int K, int D),
   (dx, dxe, pos, N, K, D), (dx, dxe, pos))
GV(moe_combine, (real *o, const real *ye, const real *gw, const int *pos, int N, int K, int D),
   (o, ye, gw, pos, N, K, D), (o, ye, gw, pos))
GV(moe_combine_backward, (real *dye, real *dgw, const real *dout, const real *ye, const real *gw,
                          const int *pos, int N, int K, int D), (dye, dgw, dout, ye, gw, pos, N, K, D),
   (dye, dgw, dout, ye, gw, pos))
GV(experts_forward, (real *ye, real *h13, real *act, const real *xe, const real *ex, const int *off,
                     int E, int D, int F), (ye, h13, act, xe, ex, off, E, D, F), (ye, h13, act, xe, ex))
GV(experts_backward, (real *dxe, real *dex, real *dh13, real *dact, const real *dye, const real *xe,
                      const real *h13, const real *act, const real *ex, const int *off, int E, int D,
                      int F), (dxe, dex, dh13, dact, dye, xe, h13, act, ex, off, E, D, F),
   (dxe, dex, dh13, dact, dye, xe, h13, act, ex))
GV(histogram, (int64_t *c, const int32_t *x, int n, int nb), (c, x, n, nb), (x))
G(int64_t, capacity_keep, (uint8_t *keep, const int32_t *idx, const real *gw, int N, int K, int E,
                           const int64_t *cap, int bw, smoe_arena_t *a), (keep, idx, gw, N, K, E, cap, bw, a),
  (keep, idx, gw))
GV(route_slots, (int32_t *so, const int32_t *idx, const uint8_t *keep, const int *soe, int E,
                 int NK), (so, idx, keep, soe, E, NK), (so, idx, keep))
G(int, split_slots, (int32_t *so, const int32_t *idx, const uint8_t *keep, const int *first,
                     const int *slots, int64_t *quota, int E, int NK, smoe_arena_t *a),
  (so, idx, keep, first, slots, quota, E, NK, a), (so, idx, keep))
GV(positions, (int *pos, const int32_t *so, const int64_t *start, int NK, int ns, smoe_arena_t *a),
   (pos, so, start, NK, ns, a), (pos, so))
GV(permute_rows, (real *o, const real *in, const int *map, int64_t rows, int D, int sc),
   (o, in, map, rows, D, sc), (o, in, map))
GV(adamw, (real *p, const real *g, real *m, real *v, size_t n, const smoe_adamw_t *o, int64_t t),
   (p, g, m, v, n, o, t), (p, g, m, v))
G(double, sumsq, (const real *x, size_t n), (x, n), (x))
GV(scale, (real *x, size_t n, real s), (x, n, s), (x))
// clang-format on

#define OP(op) .op = guard_##op
const smoe_ops_t smoe_ops_guard = {
    .name = "guard",
    .host_memory = 0,
    .alloc = guard_alloc,
    .free = guard_free,
    .to_device = guard_to_device,
    .to_host = guard_to_host,
    .host_pin = guard_host_pin,
    .stage_copy = guard_stage_copy,
    .stage_wait = guard_stage_wait,
    .stage_fence = guard_stage_fence,
    OP(fill), OP(copy), OP(add), OP(gemm), OP(matmul_forward), OP(matmul_backward),
    OP(embedding_forward), OP(embedding_backward), OP(rmsnorm_forward), OP(rmsnorm_backward),
    OP(rope_forward), OP(rope_backward), OP(attention_forward), OP(attention_decode), OP(attention_backward),
    OP(crossentropy), OP(router_forward), OP(router_stats),
    OP(router_backward), OP(moe_gather), OP(moe_gather_backward), OP(moe_combine),
    OP(moe_combine_backward), OP(experts_forward), OP(experts_backward), OP(histogram),
    OP(capacity_keep), OP(route_slots), OP(split_slots), OP(positions), OP(permute_rows),
    OP(adamw), OP(sumsq), OP(scale),
};
