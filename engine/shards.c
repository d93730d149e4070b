/* shards.c: static optimizer shards, grads to shards, weights to slots. */
#include "shards.h"

#include <string.h>

/* Zeroed elements from the backend, counted in sh->bytes. */
static real *alloc(smoe_shards_t *sh, size_t n) {
  sh->bytes += smoe_mul(n, sizeof(real));
  return sh->ops->alloc(smoe_mul(n, sizeof(real)));
}

/* The host buffer of gather_one: this rank's slice, then on rank 0 every
 * rank's (replicated: rank 0's whole expert only). */
static size_t gathered_len(int G, int rank, int replicated, size_t chunk) {
  if (replicated) return rank == 0 ? chunk : 0;
  return rank == 0 ? smoe_mul((size_t)G + 1, chunk) : chunk;
}

void smoe_shards_plan(int L, int E, size_t P, int S, int G, int rank, int replicated,
                      size_t *n, size_t *state_bytes, size_t *exchange_bytes) {
  const size_t chunk = replicated ? P : (P + (size_t)G - 1) / (size_t)G, rb = sizeof(real);
  *n = smoe_mul(smoe_mul((size_t)L, (size_t)E), chunk);
  size_t scratch = replicated ? *n : smoe_mul(smoe_mul((size_t)L * G, (size_t)S), chunk);
  *state_bytes = 4 * *n * rb; /* master | exp_avg | exp_avg_sq, grad */
  *exchange_bytes = 2 * scratch * rb + sizeof(int64_t) * (size_t)G * 4 +
                    gathered_len(G, rank, replicated, chunk) * rb;
}

void smoe_shards_init(smoe_shards_t *sh, const smoe_ops_t *ops, int L, int E, size_t P, int S,
                      smoe_comm_t *c, int replicated) {
  memset(sh, 0, sizeof *sh);
  sh->ops = ops;
  sh->L = L, sh->E = E, sh->S = S, sh->P = P, sh->replicated = replicated;
  sh->G = smoe_comm_size(c), sh->rank = smoe_comm_rank(c);
  sh->chunk = replicated ? P : (P + (size_t)sh->G - 1) / (size_t)sh->G;
  sh->n = smoe_mul(smoe_mul((size_t)L, (size_t)E), sh->chunk);
  sh->state = alloc(sh, smoe_mul(3, sh->n));
  sh->master = sh->state, sh->exp_avg = sh->state + sh->n, sh->exp_avg_sq = sh->state + 2 * sh->n;
  sh->grad = alloc(sh, sh->n);
  size_t scratch = replicated ? sh->n : smoe_mul(smoe_mul((size_t)L * sh->G, (size_t)S), sh->chunk);
  sh->send = alloc(sh, scratch);
  sh->recv = alloc(sh, scratch);
  sh->counts = xcalloc((size_t)sh->G * 4, sizeof(int64_t));
  const size_t ng = gathered_len(sh->G, sh->rank, replicated, sh->chunk);
  sh->gathered = xcalloc(ng + 1, sizeof(real));
  sh->bytes += sizeof(int64_t) * (size_t)sh->G * 4 + ng * sizeof(real);
  /* of which exchange: send, recv, counts and the gathered expert */
  sh->exchange_bytes = 2 * scratch * sizeof(real) + sizeof(int64_t) * (size_t)sh->G * 4 +
                       ng * sizeof(real);
}

void smoe_shards_free(smoe_shards_t *sh) {
  if (sh->ops) {
    sh->ops->free(sh->state);
    sh->ops->free(sh->grad);
    sh->ops->free(sh->send);
    sh->ops->free(sh->recv);
  }
  free(sh->gathered);
  free(sh->counts);
  memset(sh, 0, sizeof *sh);
}


/* Slice g of an expert vector: [g * chunk, min((g + 1) * chunk, P)). */
static size_t slice_len(const smoe_shards_t *sh, int g) {
  size_t lo = (size_t)g * sh->chunk;
  return lo >= sh->P ? 0 : (sh->P - lo < sh->chunk ? sh->P - lo : sh->chunk);
}

void smoe_shards_fill(smoe_shards_t *sh, smoe_expert_init_fn fn, const void *arg) {
  const int owner = sh->replicated ? 0 : sh->rank;
  const size_t lo = (size_t)owner * sh->chunk, len = slice_len(sh, owner);
  real *x = xcalloc(sh->chunk + 1, sizeof(real)); /* the padding stays 0 */
  for (int l = 0; l < sh->L; l++)
    for (int e = 0; e < sh->E; e++) {
      if (len) fn(arg, l, e, lo, len, x);
      sh->ops->to_device(sh->master + ((size_t)l * sh->E + e) * sh->chunk, x,
                         sizeof(real) * sh->chunk);
    }
  free(x);
}

void smoe_shards_put(smoe_shards_t *sh, int l, int e, size_t off, const real *x, size_t n) {
  const int owner = sh->replicated ? 0 : sh->rank;
  size_t lo = (size_t)owner * sh->chunk, hi = lo + slice_len(sh, owner);
  lo = lo > off ? lo : off;
  hi = hi < off + n ? hi : off + n;
  if (lo < hi)
    sh->ops->to_device(
        sh->master + ((size_t)l * sh->E + e) * sh->chunk + (lo - (size_t)owner * sh->chunk),
        x + (lo - off), sizeof(real) * (hi - lo));
}

const real *smoe_shards_gather_one(smoe_shards_t *sh, smoe_comm_t *c, int l, int e) {
  const real *mine = sh->master + ((size_t)l * sh->E + e) * sh->chunk;
  real *h = sh->gathered;
  if (sh->replicated && sh->rank != 0) return NULL;
  sh->ops->to_host(h, mine, sizeof(real) * sh->chunk);
  if (sh->replicated) return h; /* every rank has every expert: rank 0's whole */
  /* the slices in rank order are the expert's vector (then the padding) */
  smoe_comm_gather(c, h, h + sh->chunk, sizeof(real) * sh->chunk, SMOE_PHASE_OTHER);
  return sh->rank == 0 ? h + sh->chunk : NULL;
}

/* The expert of slot s of rank g in layer l, or -1. */
static int expert_at(const smoe_placement_t *p, int l, int g, int s) {
  return p->slot_expert[((size_t)l * p->G + g) * p->S + s];
}

void smoe_shards_grads(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                       const real *slot_grad) {
  const int L = sh->L, G = sh->G, S = sh->S, E = sh->E, me = sh->rank;
  const size_t P = sh->P, ch = sh->chunk;
  const smoe_ops_t *o = sh->ops;
  o->fill(sh->grad, 0, sh->n);
  if (sh->replicated) { /* baseline: every rank sums every expert's full gradient */
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) {
        int e = expert_at(p, l, me, s);
        if (e >= 0) {
          o->add(sh->grad + ((size_t)l * E + e) * P, slot_grad + ((size_t)l * S + s) * P, P);
        }
      }
    smoe_comm_allreduce_real(c, sh->grad, sh->n, SMOE_PHASE_GRAD_TO_SHARDS);
    return;
  }
  /* send to rank g: for each layer, each of my non-empty slots, slice g */
  int64_t *cnt = sh->counts;
  int64_t *scount = cnt, *soff = cnt + G, *rcount = cnt + 2 * G, *roff = cnt + 3 * G;
  size_t at = 0;
  for (int g = 0; g < G; g++) {
    soff[g] = (int64_t)at;
    size_t len = slice_len(sh, g);
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++)
        if (expert_at(p, l, me, s) >= 0) {
          real *dst = sh->send + at * ch;
          o->fill(dst + len, 0, ch - len);
          o->copy(dst, slot_grad + ((size_t)l * S + s) * P + (size_t)g * ch, len);
          at++;
        }
    scount[g] = (int64_t)at - soff[g];
  }
  at = 0;
  for (int q = 0; q < G; q++) {
    roff[q] = (int64_t)at;
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) at += expert_at(p, l, q, s) >= 0;
    rcount[q] = (int64_t)at - roff[q];
  }
  smoe_comm_alltoallv(c, sh->send, scount, soff, sh->recv, rcount, roff, sizeof(real) * ch,
                      SMOE_PHASE_GRAD_TO_SHARDS);
  /* sum the replicas' slices, sources in rank order */
  at = 0;
  for (int q = 0; q < G; q++)
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) {
        int e = expert_at(p, l, q, s);
        if (e < 0) continue;
        o->add(sh->grad + ((size_t)l * E + e) * ch, sh->recv + at++ * ch, ch);
      }
}

/* slots (L, S, P) <- for layers [l0, l1) and slots s >= s0 of each rank, the
 * weights of the experts p gives them, from every rank's master slices. */
static void weights_range(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                          real *slots, int l0, int l1, int s0, smoe_phase_t phase) {
  const int G = sh->G, S = sh->S, E = sh->E, me = sh->rank;
  const size_t P = sh->P, ch = sh->chunk;
  const smoe_ops_t *o = sh->ops;
  if (sh->replicated) { /* every rank updated every expert: copy locally */
    for (int l = l0; l < l1; l++)
      for (int s = s0; s < S; s++) {
        int e = expert_at(p, l, me, s);
        if (e >= 0)
          o->copy(slots + ((size_t)l * S + s) * P, sh->master + ((size_t)l * E + e) * P, P);
      }
    return;
  }
  /* send to rank q: for each layer, each of q's non-empty slots, my slice */
  int64_t *cnt = sh->counts;
  int64_t *scount = cnt, *soff = cnt + G, *rcount = cnt + 2 * G, *roff = cnt + 3 * G;
  size_t at = 0;
  for (int q = 0; q < G; q++) {
    soff[q] = (int64_t)at;
    for (int l = l0; l < l1; l++)
      for (int s = s0; s < S; s++) {
        int e = expert_at(p, l, q, s);
        if (e < 0) continue;
        o->copy(sh->send + at++ * ch, sh->master + ((size_t)l * E + e) * ch, ch);
      }
    scount[q] = (int64_t)at - soff[q];
  }
  size_t mine = 0;
  for (int l = l0; l < l1; l++)
    for (int s = s0; s < S; s++) mine += expert_at(p, l, me, s) >= 0;
  for (int g = 0; g < G; g++) rcount[g] = (int64_t)mine, roff[g] = (int64_t)(g * mine);
  smoe_comm_alltoallv(c, sh->send, scount, soff, sh->recv, rcount, roff, sizeof(real) * ch, phase);
  /* assemble: slice g of each of my slots comes from rank g */
  for (int g = 0; g < G; g++) {
    size_t k = 0, len = slice_len(sh, g);
    for (int l = l0; l < l1; l++)
      for (int s = s0; s < S; s++) {
        if (expert_at(p, l, me, s) < 0) continue;
        o->copy(slots + ((size_t)l * S + s) * P + (size_t)g * ch,
                sh->recv + ((size_t)g * mine + k++) * ch, len);
      }
  }
}

void smoe_shards_weights(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *next,
                         real *slots) {
  weights_range(sh, c, next, slots, 0, sh->L, 0, SMOE_PHASE_WEIGHTS_TO_SLOTS);
}

void smoe_shards_shadow_weights(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                                real *slots, int l, int s0) {
  weights_range(sh, c, p, slots, l, l + 1, s0, SMOE_PHASE_SHADOW);
}
