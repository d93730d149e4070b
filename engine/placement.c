/* placement.c: static placement and the capacity rule. */
#include "placement.h"

#include <math.h>
#include <string.h>

void smoe_placement_init(smoe_placement_t *p, int L, int E, int G, int S) {
  p->L = L, p->E = E, p->G = G, p->S = S;
  p->slot_expert = xmalloc(sizeof(int) * (size_t)L * G * S);
  p->replicas = xcalloc((size_t)L * E, sizeof(int));
  for (size_t i = 0; i < (size_t)L * G * S; i++) p->slot_expert[i] = -1;
}

void smoe_placement_free(smoe_placement_t *p) {
  free(p->slot_expert);
  free(p->replicas);
  memset(p, 0, sizeof *p);
}

void smoe_placement_copy(smoe_placement_t *dst, const smoe_placement_t *src) {
  memcpy(dst->slot_expert, src->slot_expert, sizeof(int) * (size_t)src->L * src->G * src->S);
  memcpy(dst->replicas, src->replicas, sizeof(int) * (size_t)src->L * src->E);
}

int smoe_slots_per_rank(const char *policy, int requested, int E, int G, smoe_err_t *err) {
  int adaptive = strcmp(policy, "static") != 0 && strcmp(policy, "capacity") != 0;
  int per = (E + G - 1) / G; /* E/G rounded up */
  int S = requested > 0 ? requested : adaptive ? (per + 1 > 2 * per ? per + 1 : 2 * per) : E / G;
  if (requested <= 0 && S > E) S = E; /* a rank holds at most one replica of each expert */
  if (requested <= 0 && S < 1)
    return smoe_fail(err, "placement.policy = %s holds each of the %d experts once, in one slot: "
                     "%d ranks are more than the experts (use at most %d ranks, or an adaptive "
                     "policy such as swiftmoe)", policy, E, G, E);
  if ((int64_t)G * S < E || S < 1)
    return smoe_fail(err,
                     "placement.slots_per_rank = %d is too few: %d ranks x %d slots must hold all "
                     "%d experts (need at least %d)",
                     S, G, S, E, per);
  return S;
}

void smoe_placement_count_replicas(smoe_placement_t *p) {
  memset(p->replicas, 0, sizeof(int) * (size_t)p->L * p->E);
  for (int l = 0; l < p->L; l++)
    for (int i = 0; i < p->G * p->S; i++) {
      int e = p->slot_expert[((size_t)l * p->G) * p->S + i];
      if (e >= 0) p->replicas[(size_t)l * p->E + e]++;
    }
}

int smoe_placement_static(smoe_placement_t *p, smoe_err_t *err) {
  const int E = p->E, G = p->G, per = E / G;
  if (E % G != 0)
    return smoe_fail(err,
                     "the static placement needs moe.num_experts (%d) divisible by the number of "
                     "ranks (%d); use a rank count that divides %d",
                     E, G, E);
  if (p->S < per)
    return smoe_fail(err, "the static placement needs %d slots per rank, placement.slots_per_rank "
                     "is %d", per, p->S);
  for (int l = 0; l < p->L; l++)
    for (int g = 0; g < G; g++)
      for (int s = 0; s < p->S; s++)
        p->slot_expert[((size_t)l * G + g) * p->S + s] = s < per ? g * per + s : -1;
  smoe_placement_count_replicas(p);
  return 0;
}

void smoe_placement_random(smoe_placement_t *p, uint64_t seed, int64_t step,
                           smoe_arena_t *scratch) {
  const int E = p->E, G = p->G, S = p->S;
  size_t mark = smoe_arena_mark(scratch);
  int *order = smoe_arena_take(scratch, sizeof(int) * (size_t)E);
  int *fill = smoe_arena_take(scratch, sizeof(int) * (size_t)G);
  int *cand = smoe_arena_take(scratch, sizeof(int) * (size_t)(E > G ? E : G));
  for (int l = 0; l < p->L; l++) {
    uint64_t r = smoe_mix64(seed ^ smoe_mix64(0x9ace0000ull + (uint64_t)step * 4096 + (uint64_t)l));
    int *se = p->slot_expert + (size_t)l * G * S;
    for (int i = 0; i < G * S; i++) se[i] = -1;
    for (int g = 0; g < G; g++) fill[g] = 0;
    for (int e = 0; e < E; e++) order[e] = e;
    for (int e = E - 1; e > 0; e--) { /* Fisher-Yates */
      r = smoe_mix64(r);
      int j = (int)(r % (uint64_t)(e + 1)), t = order[e];
      order[e] = order[j], order[j] = t;
    }
    /* every expert once, each on a random rank with a free slot (G*S >= E) */
    for (int i = 0; i < E; i++) {
      int n = 0;
      for (int g = 0; g < G; g++)
        if (fill[g] < S) cand[n++] = g;
      r = smoe_mix64(r);
      int g = cand[r % (uint64_t)n];
      se[g * S + fill[g]++] = order[i];
    }
    /* the remaining slots: a random expert not yet on that rank */
    for (int g = 0; g < G; g++)
      while (fill[g] < S) {
        int n = 0;
        for (int e = 0; e < E; e++) {
          int here = 0;
          for (int s = 0; s < fill[g]; s++) here |= se[g * S + s] == e;
          if (!here) cand[n++] = e;
        }
        if (n == 0) break; /* the rank holds every expert already */
        r = smoe_mix64(r);
        se[g * S + fill[g]++] = cand[r % (uint64_t)n];
      }
  }
  smoe_placement_count_replicas(p);
  smoe_arena_release(scratch, mark);
}

int smoe_placement_check(const smoe_placement_t *p, smoe_err_t *err) {
  const int E = p->E, G = p->G, S = p->S;
  for (int l = 0; l < p->L; l++)
    for (int g = 0; g < G; g++)
      for (int s = 0; s < S; s++) {
        int e = p->slot_expert[((size_t)l * G + g) * S + s];
        if (e < -1 || e >= E)
          return smoe_fail(err, "layer %d: slot %d of rank %d holds expert %d (allowed: 0..%d, "
                           "or -1 for an empty slot)", l, s, g, e, E - 1);
      }
  /* one pass over the slots per layer: each expert's count and the last
   * rank that held it (a second replica on that rank is a duplicate) */
  int *n = xmalloc(sizeof(int) * (size_t)E), *last = xmalloc(sizeof(int) * (size_t)E);
  int rc = 0;
  for (int l = 0; l < p->L && rc == 0; l++) {
    const int *se = p->slot_expert + (size_t)l * G * S;
    for (int e = 0; e < E; e++) n[e] = 0, last[e] = -1;
    for (int g = 0; g < G && rc == 0; g++)
      for (int s = 0; s < S && rc == 0; s++) {
        int e = se[g * S + s];
        if (e < 0) continue;
        if (last[e] == g) {
          int here = 0;
          for (int k = 0; k < S; k++) here += se[g * S + k] == e;
          rc = smoe_fail(err, "layer %d: expert %d has %d replicas on rank %d", l, e, here, g);
        }
        last[e] = g, n[e]++;
      }
    for (int e = 0; e < E && rc == 0; e++) {
      if (n[e] == 0) rc = smoe_fail(err, "layer %d: expert %d has no slot", l, e);
      else if (n[e] != p->replicas[(size_t)l * E + e])
        rc = smoe_fail(err, "layer %d: expert %d replica count %d, slots say %d", l, e,
                       p->replicas[(size_t)l * E + e], n[e]);
    }
  }
  free(n), free(last);
  return rc;
}

void smoe_placement_routes(const smoe_placement_t *p, int *route, smoe_arena_t *scratch) {
  const int E = p->E, G = p->G, S = p->S;
  size_t mark = smoe_arena_mark(scratch);
  int *where = smoe_arena_take(scratch, sizeof(int) * (size_t)G);
  for (int l = 0; l < p->L; l++) {
    const int *se = p->slot_expert + (size_t)l * G * S;
    for (int e = 0; e < E; e++) {
      int n = 0; /* global slots of e's replicas, in rank order */
      for (int i = 0; i < G * S; i++)
        if (se[i] == e) where[n++] = i;
      for (int q = 0; q < G; q++) {
        int slot = n ? where[q % n] : -1;
        for (int k = 0; k < n; k++)
          if (where[k] / S == q) slot = where[k]; /* a replica on the token's rank */
        route[((size_t)l * G + q) * E + e] = slot;
      }
    }
  }
  smoe_arena_release(scratch, mark);
}

int64_t smoe_capacity(double capacity_factor, int64_t min_capacity, int K, int64_t n_tokens,
                      int E) {
  int64_t c = (int64_t)ceil(capacity_factor * K * (double)n_tokens / E);
  return c > min_capacity ? c : min_capacity;
}

/* One assignment in drop-priority order: higher gate weight first when
 * ordering by weight, then position (k, n). */
typedef struct {
  real w;
  int k, n;
} ranked_t;

static int by_rank(const void *x, const void *y) {
  const ranked_t *a = x, *b = y;
  if (a->w != b->w) return a->w > b->w ? -1 : 1;
  if (a->k != b->k) return a->k - b->k;
  return a->n - b->n;
}

int64_t smoe_capacity_keep(uint8_t *keep, const int32_t *idx, const real *gw, int N, int K, int E,
                           const int64_t *capacity, int weight_order, smoe_arena_t *scratch) {
  const int NK = N * K;
  size_t mark = smoe_arena_mark(scratch);
  ranked_t *r = smoe_arena_take(scratch, sizeof *r * (size_t)(NK ? NK : 1));
  int64_t *used = smoe_arena_zero(scratch, (size_t)E, sizeof(int64_t)), dropped = 0;
  for (int i = 0, k = 0; k < K; k++) /* position order: all k-th choices, in token order */
    for (int n = 0; n < N; n++, i++) r[i] = (ranked_t){weight_order ? gw[n * K + k] : 0, k, n};
  if (weight_order) qsort(r, (size_t)NK, sizeof *r, by_rank);
  for (int i = 0; i < NK; i++) {
    int a = r[i].n * K + r[i].k;
    keep[a] = used[idx[a]] < capacity[idx[a]];
    used[idx[a]] += keep[a];
    dropped += !keep[a];
  }
  smoe_arena_release(scratch, mark);
  return dropped;
}
