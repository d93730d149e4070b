/* policy.c: the placement policies. */
#include "policy.h"

#include <math.h>
#include <string.h>

#include "plan.h"

static const char *names[] = {"static", "capacity", "random", "swiftmoe", "symi"};

int smoe_policy_kind(const char *name, smoe_policy_kind_t *kind, smoe_err_t *err) {
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (strcmp(name, names[i]) == 0) {
      *kind = (smoe_policy_kind_t)i;
      return 0;
    }
  return smoe_fail(err, "placement.policy = %s: expected static, capacity, random, swiftmoe or "
                   "symi", name);
}

int smoe_policy_init(smoe_policy_t *p, const char *name, int L, int E, int G, int S,
                     uint64_t seed, double ema, smoe_err_t *err) {
  memset(p, 0, sizeof *p);
  if (smoe_policy_kind(name, &p->kind, err) != 0) return -1;
  p->L = L, p->E = E, p->G = G, p->S = S, p->seed = seed, p->ema = ema;
  p->loads = xcalloc((size_t)L * E, sizeof(double));
  return 0;
}

void smoe_policy_shadow_slots(smoe_policy_t *p, int H) {
  if (p->kind == SMOE_POLICY_SWIFTMOE && H > 0 && H < p->S) p->H = H;
}

void smoe_policy_free(smoe_policy_t *p) {
  free(p->loads);
  smoe_arena_free(&p->scratch);
  memset(p, 0, sizeof *p);
}

int smoe_policy_split_mode(smoe_policy_kind_t kind) {
  return kind == SMOE_POLICY_SWIFTMOE ? 1 : kind == SMOE_POLICY_SYMI ? 2 : 0;
}

smoe_drops_t smoe_policy_drops(smoe_policy_kind_t kind, double factor, int64_t min_capacity,
                               const char *drop_order) {
  smoe_drops_t d = {SMOE_DROPS_NONE, factor, min_capacity, 0};
  if (kind == SMOE_POLICY_CAPACITY)
    d.kind = SMOE_DROPS_CAPACITY, d.by_weight = strcmp(drop_order, "weight") == 0;
  if (kind == SMOE_POLICY_SYMI) d.kind = SMOE_DROPS_SYMI;
  return d;
}

int64_t smoe_drops_quota(const smoe_drops_t *d, const int64_t *counts, int rows, int E, int K,
                         int64_t n_tokens, const int *replicas, int G, int S, int64_t *allowed) {
  int64_t dropped = 0;
  if (d->kind != SMOE_DROPS_SYMI) {
    int64_t cap = d->kind == SMOE_DROPS_CAPACITY
                      ? smoe_capacity(d->factor, d->min_capacity, K, n_tokens, E)
                      : INT64_MAX;
    for (size_t i = 0; i < (size_t)rows * E; i++) {
      allowed[i] = counts[i] < cap ? counts[i] : cap;
      dropped += counts[i] - allowed[i];
    }
    return dropped;
  }
  /* symi: expert e keeps r_e x ceil(cf K T_global / (G S)) */
  int64_t per_slot = (int64_t)ceil(d->factor * K * (double)n_tokens / ((double)G * S));
  for (int e = 0; e < E; e++) {
    int64_t total = 0, cap = per_slot * replicas[e], given = 0;
    for (int q = 0; q < rows; q++) total += counts[(size_t)q * E + e];
    for (int q = 0; q < rows; q++) { /* the capacity shared in proportion, remainder to low ranks */
      int64_t c = counts[(size_t)q * E + e];
      allowed[(size_t)q * E + e] = total <= cap ? c : (int64_t)((double)c * cap / (double)total);
      given += allowed[(size_t)q * E + e];
    }
    for (int q = 0; q < rows && total > cap && given < cap; q++)
      if (allowed[(size_t)q * E + e] < counts[(size_t)q * E + e]) allowed[(size_t)q * E + e]++, given++;
    dropped += total - given;
  }
  return dropped;
}

int64_t smoe_drops_rows_bound(const smoe_drops_t *d, int G, int S, int E, int K, int64_t N) {
  const int64_t any = (int64_t)G * N * (K < S ? K : S);
  int64_t b = any;
  if (d->kind == SMOE_DROPS_CAPACITY)
    b = (int64_t)S * G * smoe_capacity(d->factor, d->min_capacity, K, N, E);
  if (d->kind == SMOE_DROPS_SYMI)
    b = (int64_t)S * ((int64_t)ceil(d->factor * K * (double)G * N / ((double)G * S)) + G);
  return b < any ? b : any;
}

/* One layer planned from loads (E) and src (G, E) or NULL. */
static void plan_layer(smoe_policy_t *p, const double *loads, const int64_t *src,
                       int *slot_expert) {
  const size_t mark = smoe_arena_mark(&p->scratch);
  const int Sp = p->S - p->H; /* the planned slots; the shadow slots after them stay empty */
  int *replicas = smoe_arena_take(&p->scratch, sizeof(int) * (size_t)p->E);
  int *planned = p->H ? smoe_arena_take(&p->scratch, sizeof(int) * (size_t)p->G * Sp) : slot_expert;
  int symi = p->kind == SMOE_POLICY_SYMI;
  smoe_plan_counts(symi ? SMOE_COUNTS_PROPORTIONAL : SMOE_COUNTS_GREEDY, loads, p->E, p->G, Sp,
                   replicas, &p->scratch);
  smoe_plan_slots(symi ? SMOE_SLOTS_CONTIGUOUS : SMOE_SLOTS_BALANCED, loads, replicas, src, p->E,
                  p->G, Sp, planned, &p->scratch);
  for (int g = p->G - 1; p->H && g >= 0; g--)
    for (int s = p->S - 1; s >= 0; s--)
      slot_expert[(size_t)g * p->S + s] = s < Sp ? planned[(size_t)g * Sp + s] : -1;
  smoe_arena_release(&p->scratch, mark);
}

int smoe_policy_first(smoe_policy_t *p, smoe_placement_t *out, smoe_err_t *err) {
  if (p->kind == SMOE_POLICY_RANDOM) {
    smoe_placement_random(out, p->seed, 0, &p->scratch);
    return 0;
  }
  /* one rank holds every expert once whatever the plan: use the identity */
  if (p->kind == SMOE_POLICY_STATIC || p->kind == SMOE_POLICY_CAPACITY || p->G == 1)
    return smoe_placement_static(out, err);
  double *uniform = xmalloc(sizeof(double) * (size_t)p->E); /* no loads yet: all equal */
  for (int e = 0; e < p->E; e++) uniform[e] = 1.0;
  for (int l = 0; l < p->L; l++)
    plan_layer(p, uniform, NULL, out->slot_expert + (size_t)l * p->G * p->S);
  free(uniform);
  smoe_placement_count_replicas(out);
  return 0;
}

int smoe_policy_first_from(smoe_policy_t *p, const double *loads, smoe_placement_t *out,
                           smoe_err_t *err) {
  if (p->kind == SMOE_POLICY_RANDOM)
    return smoe_fail(err, "placement.init_from: the random policy has no planned placement; use "
                     "static, capacity, swiftmoe or symi");
  for (int l = 0; l < p->L; l++)
    plan_layer(p, loads + (size_t)l * p->E, NULL, out->slot_expert + (size_t)l * p->G * p->S);
  smoe_placement_count_replicas(out);
  return 0;
}

void smoe_policy_next(smoe_policy_t *p, const int64_t *expert_counts, const int64_t *src,
                      int64_t step, const smoe_placement_t *now, smoe_placement_t *next) {
  switch (p->kind) {
    case SMOE_POLICY_RANDOM: smoe_placement_random(next, p->seed, step, &p->scratch); return;
    case SMOE_POLICY_STATIC:
    case SMOE_POLICY_CAPACITY: smoe_placement_copy(next, now); return;
    default: break;
  }
  if (p->G == 1) {
    smoe_placement_copy(next, now);
    return;
  }
  const size_t LE = (size_t)p->L * p->E;
  for (size_t i = 0; i < LE; i++)
    p->loads[i] = p->have_loads ? p->ema * p->loads[i] + (1 - p->ema) * (double)expert_counts[i]
                                : (double)expert_counts[i];
  p->have_loads = 1;
  for (int l = 0; l < p->L; l++)
    plan_layer(p, p->loads + (size_t)l * p->E, src ? src + (size_t)l * p->G * p->E : NULL,
               next->slot_expert + (size_t)l * p->G * p->S);
  smoe_placement_count_replicas(next);
}
