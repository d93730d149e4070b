/* placement.c: static placement and the capacity rule. */
#include "placement.h"

#include <math.h>
#include <string.h>

int smoe_placement_static(smoe_placement_t *p, int L, int E, int G, smoe_err_t *err) {
  memset(p, 0, sizeof *p);
  if (G < 1 || E % G != 0)
    return smoe_fail(err,
                     "the static placement needs moe.num_experts (%d) divisible by the number of "
                     "ranks (%d); use a rank count that divides %d",
                     E, G, E);
  p->L = L, p->E = E, p->G = G, p->S = E / G;
  p->slot_expert = xmalloc(sizeof(int) * (size_t)L * E);
  p->replicas = xmalloc(sizeof(int) * (size_t)L * E);
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++) {
      p->slot_expert[(size_t)l * E + e] = e; /* rank e / S, slot e % S */
      p->replicas[(size_t)l * E + e] = 1;
    }
  return 0;
}

void smoe_placement_free(smoe_placement_t *p) {
  free(p->slot_expert);
  free(p->replicas);
  memset(p, 0, sizeof *p);
}

int smoe_placement_slot_of(const smoe_placement_t *p, int l, int e) {
  const int *se = p->slot_expert + (size_t)l * p->G * p->S;
  for (int i = 0; i < p->G * p->S; i++)
    if (se[i] == e) return i;
  return -1;
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
                           int64_t capacity, int weight_order) {
  const int NK = N * K;
  ranked_t *r = xmalloc(sizeof *r * (size_t)(NK ? NK : 1));
  int64_t *used = xcalloc((size_t)E, sizeof(int64_t)), dropped = 0;
  for (int i = 0, k = 0; k < K; k++) /* position order: all k-th choices, in token order */
    for (int n = 0; n < N; n++, i++) r[i] = (ranked_t){weight_order ? gw[n * K + k] : 0, k, n};
  if (weight_order) qsort(r, (size_t)NK, sizeof *r, by_rank);
  for (int i = 0; i < NK; i++) {
    int a = r[i].n * K + r[i].k;
    keep[a] = used[idx[a]] < capacity;
    used[idx[a]] += keep[a];
    dropped += !keep[a];
  }
  free(r);
  free(used);
  return dropped;
}
