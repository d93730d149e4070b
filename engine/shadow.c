/* shadow.c: hedged loads and same-step shadows (shadow.h). */
#include "shadow.h"

#include <math.h>
#include <string.h>

#include "split.h"

enum { MAX_MISSES = 8 }; /* experts tried in a row whose shadow does not pay */

void smoe_hedge_loads(const double *mean, const double *var, int E, double z, double *out) {
  for (int e = 0; e < E; e++) out[e] = mean[e] + (z > 0 && var[e] > 0 ? z * sqrt(var[e]) : 0);
}

void smoe_hedge_update(double *mean, double *var, const double *x, int E, double ema, int first) {
  for (int e = 0; e < E; e++) {
    if (first) {
      mean[e] = x[e], var[e] = 0;
      continue;
    }
    const double d = x[e] - mean[e];
    var[e] = ema * var[e] + (1 - ema) * d * d;
    mean[e] = ema * mean[e] + (1 - ema) * x[e];
  }
}

/* The most token rows any rank computes under the split of slot_all (G*SH
 * slots); rank_load (G) filled. */
static int64_t split_max(const int64_t *counts, const int *slot_all, int E, int G, int SH,
                         int64_t *take, int64_t *rank_load, smoe_arena_t *a) {
  smoe_split(counts, slot_all, E, G, SH, take, a);
  smoe_split_rank_load(take, G, SH, rank_load);
  int64_t mx = 0;
  for (int g = 0; g < G; g++) mx = rank_load[g] > mx ? rank_load[g] : mx;
  return mx;
}

int smoe_shadow_plan(const int64_t *counts, const int *slot_expert, int E, int G, int S, int H,
                     const smoe_shadow_cost_t *cost, int *slot_all, smoe_arena_t *a) {
  const int SH = S + H;
  for (int g = 0; g < G; g++) {
    memcpy(slot_all + (size_t)g * SH, slot_expert + (size_t)g * S, sizeof(int) * (size_t)S);
    for (int h = 0; h < H; h++) slot_all[(size_t)g * SH + S + h] = -1;
  }
  if (H <= 0 || G < 2) return 0;
  const size_t mark = smoe_arena_mark(a);
  int64_t *take = smoe_arena_take(a, sizeof(int64_t) * (size_t)G * G * SH);
  int64_t *load = smoe_arena_take(a, sizeof(int64_t) * (size_t)G);
  int64_t *tokens = smoe_arena_take(a, sizeof(int64_t) * (size_t)E);
  int64_t *reps = smoe_arena_take(a, sizeof(int64_t) * (size_t)E);
  memset(tokens, 0, sizeof(int64_t) * (size_t)E);
  memset(reps, 0, sizeof(int64_t) * (size_t)E);
  for (int q = 0; q < G; q++)
    for (int x = 0; x < E; x++) tokens[x] += counts[(size_t)q * E + x];
  for (int gs = 0; gs < G * S; gs++)
    if (slot_expert[gs] >= 0) reps[slot_expert[gs]]++;
  int *added = smoe_arena_take(a, sizeof(int) * (size_t)G * H); /* the shadows' slots, in order */
  char *full = smoe_arena_take(a, (size_t)E); /* no rank can take a shadow of it */
  memset(full, 0, (size_t)E);
  int64_t mx = split_max(counts, slot_all, E, G, SH, take, load, a), total = 0;
  for (int g = 0; g < G; g++) total += load[g];
  /* no rank computes less than the mean: when even a perfect balance would
   * not pay for one shadow, there is nothing to search */
  if ((double)(mx - (total + G - 1) / G) * cost->row_s <= cost->shadow_s) {
    smoe_arena_release(a, mark);
    return 0;
  }
  double best = (double)mx * cost->row_s; /* the estimate without shadows */
  int n = 0, keep = 0, misses = 0;
  for (;;) {
    /* the expert with the most tokens per replica: the one the split can
     * least spread (the split levels every expert's replicas) */
    int e = -1;
    for (int x = 0; x < E; x++)
      if (tokens[x] > 0 && !full[x] && (e < 0 || tokens[x] * reps[e] > tokens[e] * reps[x])) e = x;
    if (e < 0) break;
    /* the least-loaded rank with a free shadow slot and no replica of e */
    int to = -1, slot = -1;
    for (int g = 0; g < G; g++) {
      int free_slot = -1, holds = 0;
      for (int s = 0; s < SH; s++) {
        const int x = slot_all[(size_t)g * SH + s];
        holds |= x == e;
        if (s >= S && x < 0 && free_slot < 0) free_slot = g * SH + s;
      }
      if (!holds && free_slot >= 0 && (to < 0 || load[g] < load[to])) to = g, slot = free_slot;
    }
    if (to < 0) { /* every rank with a free shadow slot holds e: the next expert */
      full[e] = 1;
      continue;
    }
    slot_all[slot] = e;
    const int64_t after = split_max(counts, slot_all, E, G, SH, take, load, a);
    if ((double)(mx - after) * cost->row_s <= cost->slice_s) {
      /* its rows do not pay for it (the slowest rank may be slow for another
       * expert's tokens): undone, and the next expert tried, a few at most */
      slot_all[slot] = -1;
      split_max(counts, slot_all, E, G, SH, take, load, a);
      full[e] = 1;
      if (++misses == MAX_MISSES) break;
      continue;
    }
    misses = 0;
    memset(full, 0, (size_t)E); /* the loads changed: every expert is a candidate again */
    added[n++] = slot;
    reps[e]++;
    mx = after;
    const double est = (double)mx * cost->row_s + cost->shadow_s + n * cost->slice_s;
    if (est < best) best = est, keep = n;
  }
  for (int i = keep; i < n; i++) slot_all[added[i]] = -1; /* past the best prefix: undone */
  smoe_arena_release(a, mark);
  return keep;
}
