/* shards.c: static optimizer shards, grads to shards, weights to slots. */
#include "shards.h"

#include <string.h>

/* Zeroed elements, counted in sh->bytes. */
static real *alloc(smoe_shards_t *sh, size_t n) {
  sh->bytes += smoe_mul(n, sizeof(real));
  return xcalloc(n, sizeof(real));
}

void smoe_shards_init(smoe_shards_t *sh, int L, int E, size_t P, int S, smoe_comm_t *c,
                      int replicated) {
  memset(sh, 0, sizeof *sh);
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
  sh->exchange_bytes = 2 * scratch * sizeof(real) + sizeof(int64_t) * (size_t)sh->G * 4;
  sh->bytes += sizeof(int64_t) * (size_t)sh->G * 4;
}

void smoe_shards_free(smoe_shards_t *sh) {
  free(sh->state);
  free(sh->grad);
  free(sh->send);
  free(sh->recv);
  free(sh->counts);
  memset(sh, 0, sizeof *sh);
}


/* Slice g of an expert vector: [g * chunk, min((g + 1) * chunk, P)). */
static size_t slice_len(const smoe_shards_t *sh, int g) {
  size_t lo = (size_t)g * sh->chunk;
  return lo >= sh->P ? 0 : (sh->P - lo < sh->chunk ? sh->P - lo : sh->chunk);
}

void smoe_shards_load(smoe_shards_t *sh, const real *full) {
  const int owner = sh->replicated ? 0 : sh->rank;
  const size_t len = slice_len(sh, owner);
  for (size_t le = 0; le < (size_t)sh->L * sh->E; le++) {
    real *dst = sh->master + le * sh->chunk;
    memset(dst, 0, sizeof(real) * sh->chunk);
    memcpy(dst, full + le * sh->P + (size_t)owner * sh->chunk, sizeof(real) * len);
  }
}

void smoe_shards_gather(smoe_shards_t *sh, smoe_comm_t *c, real *full) {
  const size_t LE = (size_t)sh->L * sh->E;
  if (sh->replicated) { /* every rank has every expert */
    for (size_t le = 0; le < LE; le++)
      memcpy(full + le * sh->P, sh->master + le * sh->chunk, sizeof(real) * sh->P);
    return;
  }
  /* one expert at a time: rank 0 holds G slices of one expert beyond full */
  real *all = sh->rank == 0 ? xmalloc(sizeof(real) * sh->chunk * (size_t)sh->G) : NULL;
  for (size_t le = 0; le < LE; le++) {
    smoe_comm_gather(c, sh->master + le * sh->chunk, all, sizeof(real) * sh->chunk,
                     SMOE_PHASE_OTHER);
    for (int g = 0; all && g < sh->G; g++)
      memcpy(full + le * sh->P + (size_t)g * sh->chunk, all + (size_t)g * sh->chunk,
             sizeof(real) * slice_len(sh, g));
  }
  free(all);
}

/* The expert of slot s of rank g in layer l, or -1. */
static int expert_at(const smoe_placement_t *p, int l, int g, int s) {
  return p->slot_expert[((size_t)l * p->G + g) * p->S + s];
}

void smoe_shards_grads(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                       const real *slot_grad) {
  const int L = sh->L, G = sh->G, S = sh->S, E = sh->E, me = sh->rank;
  const size_t P = sh->P, ch = sh->chunk;
  memset(sh->grad, 0, sizeof(real) * sh->n);
  if (sh->replicated) { /* baseline: every rank sums every expert's full gradient */
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) {
        int e = expert_at(p, l, me, s);
        if (e >= 0) {
          real *dst = sh->grad + ((size_t)l * E + e) * P;
          const real *src = slot_grad + ((size_t)l * S + s) * P;
          for (size_t i = 0; i < P; i++) dst[i] += src[i];
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
          memset(dst, 0, sizeof(real) * ch);
          memcpy(dst, slot_grad + ((size_t)l * S + s) * P + (size_t)g * ch, sizeof(real) * len);
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
        real *dst = sh->grad + ((size_t)l * E + e) * ch;
        const real *src = sh->recv + at++ * ch;
        for (size_t i = 0; i < ch; i++) dst[i] += src[i];
      }
}

void smoe_shards_weights(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *next,
                         real *slots) {
  const int L = sh->L, G = sh->G, S = sh->S, E = sh->E, me = sh->rank;
  const size_t P = sh->P, ch = sh->chunk;
  if (sh->replicated) { /* every rank updated every expert: copy locally */
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) {
        int e = expert_at(next, l, me, s);
        if (e >= 0)
          memcpy(slots + ((size_t)l * S + s) * P, sh->master + ((size_t)l * E + e) * P,
                 sizeof(real) * P);
      }
    return;
  }
  /* send to rank q: for each layer, each of q's non-empty slots, my slice */
  int64_t *cnt = sh->counts;
  int64_t *scount = cnt, *soff = cnt + G, *rcount = cnt + 2 * G, *roff = cnt + 3 * G;
  size_t at = 0;
  for (int q = 0; q < G; q++) {
    soff[q] = (int64_t)at;
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) {
        int e = expert_at(next, l, q, s);
        if (e < 0) continue;
        memcpy(sh->send + at++ * ch, sh->master + ((size_t)l * E + e) * ch, sizeof(real) * ch);
      }
    scount[q] = (int64_t)at - soff[q];
  }
  size_t mine = 0;
  for (int l = 0; l < L; l++)
    for (int s = 0; s < S; s++) mine += expert_at(next, l, me, s) >= 0;
  for (int g = 0; g < G; g++) rcount[g] = (int64_t)mine, roff[g] = (int64_t)(g * mine);
  smoe_comm_alltoallv(c, sh->send, scount, soff, sh->recv, rcount, roff, sizeof(real) * ch,
                      SMOE_PHASE_WEIGHTS_TO_SLOTS);
  /* assemble: slice g of each of my slots comes from rank g */
  for (int g = 0; g < G; g++) {
    size_t k = 0, len = slice_len(sh, g);
    for (int l = 0; l < L; l++)
      for (int s = 0; s < S; s++) {
        if (expert_at(next, l, me, s) < 0) continue;
        memcpy(slots + ((size_t)l * S + s) * P + (size_t)g * ch,
               sh->recv + ((size_t)g * mine + k++) * ch, sizeof(real) * len);
      }
  }
}
