/* test_split: the load-aware token split and the even split, on hand-worked
 * cases (locality, extreme routing) and on thousands of randomised ones
 * against an exact optimum computed here by independent code (Edmonds-Karp
 * max-flow on the whole expert -> rank graph, bisection on the cap M):
 * every token sent, only to slots of its expert, the largest rank load at
 * the optimum, identical results when recomputed, rows equal to the table. */
/* cmocka.h needs these first */
// clang-format off
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
// clang-format on

#include "plan.h"
#include "shadow.h"
#include "split.h"

static smoe_arena_t scratch; /* the planner's, split's and dispatch's temporary arrays */

static uint64_t next(uint64_t *r) {
  return *r = smoe_mix64(*r);
}
static double uniform01(uint64_t *r) {
  return (double)(next(r) >> 11) * 0x1.0p-53;
}

/* --------------------------------------------------- the exact optimum */

/* Max-flow by shortest augmenting paths on a dense capacity matrix (n x n). */
static int64_t edmonds_karp(int64_t *cap, int n, int s, int t) {
  int64_t flow = 0;
  int *prev = malloc(sizeof(int) * n), *queue = malloc(sizeof(int) * n);
  for (;;) {
    for (int i = 0; i < n; i++) prev[i] = -1;
    int head = 0, tail = 0;
    queue[tail++] = s, prev[s] = s;
    while (head < tail && prev[t] < 0) {
      int u = queue[head++];
      for (int v = 0; v < n; v++)
        if (prev[v] < 0 && cap[u * n + v] > 0) prev[v] = u, queue[tail++] = v;
    }
    if (prev[t] < 0) break;
    int64_t b = INT64_MAX;
    for (int v = t; v != s; v = prev[v]) b = cap[prev[v] * n + v] < b ? cap[prev[v] * n + v] : b;
    for (int v = t; v != s; v = prev[v]) cap[prev[v] * n + v] -= b, cap[v * n + prev[v]] += b;
    flow += b;
  }
  free(prev), free(queue);
  return flow;
}

/* The least M such that every token fits on the ranks of its expert's
 * replicas with at most M per rank; with integer data this is the
 * fractional optimum rounded up. */
static int64_t exact_optimum(const int64_t *counts, const int *se, int E, int G, int S) {
  const int n = 2 + E + G, s = 0, t = 1;
  int64_t total = 0, *T = calloc(E, sizeof(int64_t));
  for (int q = 0; q < G; q++)
    for (int e = 0; e < E; e++) T[e] += counts[q * E + e], total += counts[q * E + e];
  int64_t lo = -1, hi = total; /* lo infeasible (or -1), hi feasible */
  int64_t *cap = malloc(sizeof(int64_t) * n * n);
  while (hi - lo > 1) {
    int64_t M = lo + (hi - lo) / 2;
    memset(cap, 0, sizeof(int64_t) * n * n);
    for (int e = 0; e < E; e++) cap[s * n + 2 + e] = T[e];
    for (int gs = 0; gs < G * S; gs++)
      if (se[gs] >= 0) cap[(2 + se[gs]) * n + 2 + E + gs / S] = total;
    for (int g = 0; g < G; g++) cap[(2 + E + g) * n + t] = M;
    if (edmonds_karp(cap, n, s, t) == total)
      hi = M;
    else
      lo = M;
  }
  free(cap), free(T);
  return hi;
}

/* ------------------------------------------------------------- checks */

/* Every token of (q, e) sent to slots of e, nothing to other slots. */
static void check_conserves(const int64_t *take, const int64_t *counts, const int *se, int E, int G,
                            int S) {
  const int GS = G * S;
  int64_t *sent = calloc(E, sizeof(int64_t));
  for (int q = 0; q < G; q++) {
    memset(sent, 0, sizeof(int64_t) * E);
    for (int gs = 0; gs < GS; gs++) {
      int64_t n = take[q * GS + gs];
      assert_true(n >= 0);
      if (n == 0) continue;
      assert_true(se[gs] >= 0); /* never to an empty slot */
      sent[se[gs]] += n;
    }
    for (int e = 0; e < E; e++) assert_int_equal(sent[e], counts[q * E + e]);
  }
  free(sent);
}

static int64_t max_load(const int64_t *take, int G, int S) {
  int64_t *load = malloc(sizeof(int64_t) * G), mx = 0;
  smoe_split_rank_load(take, G, S, load);
  for (int g = 0; g < G; g++) mx = load[g] > mx ? load[g] : mx;
  free(load);
  return mx;
}

/* A random valid placement, independent of the planner: random replica
 * counts laid out slot-major (position p -> rank p % G, so that r <= G
 * consecutive positions are distinct ranks), then ranks and slots shuffled. */
static void random_placement(uint64_t *rs, int E, int G, int S, int *se) {
  int *r = malloc(sizeof(int) * E), *perm = malloc(sizeof(int) * G),
      *tmp = malloc(sizeof(int) * G * S);
  int64_t sum = 0, room = (int64_t)G * S;
  for (int e = 0; e < E; e++) r[e] = 1, sum++;
  while (sum < room && uniform01(rs) < 0.9) {
    int e = (int)(next(rs) % E);
    if (r[e] < G) r[e]++, sum++;
  }
  for (int i = 0; i < G * S; i++) tmp[i] = -1;
  int p = 0;
  for (int e = 0; e < E; e++)
    for (int k = 0; k < r[e]; k++, p++) tmp[(p % G) * S + p / G] = e;
  for (int g = 0; g < G; g++) perm[g] = g;
  for (int g = G - 1; g > 0; g--) {
    int j = (int)(next(rs) % (g + 1)), x = perm[g];
    perm[g] = perm[j], perm[j] = x;
  }
  for (int g = 0; g < G; g++) {
    for (int s = 0; s < S; s++) se[perm[g] * S + s] = tmp[g * S + s];
    for (int s = S - 1; s > 0; s--) {
      int j = (int)(next(rs) % (s + 1)), x = se[perm[g] * S + s];
      se[perm[g] * S + s] = se[perm[g] * S + j], se[perm[g] * S + j] = x;
    }
  }
  free(r), free(perm), free(tmp);
}

enum { UNIFORM, ZIPF10, ZIPF15, HOT, ONE, SPARSE, N_KINDS };

static void random_counts(uint64_t *rs, int kind, int E, int G, int64_t *counts) {
  int hot = (int)(next(rs) % E);
  for (int q = 0; q < G; q++)
    for (int e = 0; e < E; e++) {
      int k = (e - hot + E) % E; /* popularity rank */
      double x;
      switch (kind) {
        case UNIFORM:
          x = 200 * uniform01(rs);
          break;
        case ZIPF10:
          x = 400.0 / (k + 1) * (0.7 + 0.6 * uniform01(rs));
          break;
        case ZIPF15:
          x = 400.0 / pow(k + 1, 1.5) * (0.7 + 0.6 * uniform01(rs));
          break;
        case HOT:
          x = k == 0 ? 2000 * uniform01(rs) : 50 * uniform01(rs);
          break;
        case ONE:
          x = k == 0 ? 1000 : 0;
          break;
        default:
          x = uniform01(rs) < 0.2 ? 300 * uniform01(rs) : 0;
      }
      counts[q * E + e] = (int64_t)x;
    }
}

/* ---------------------------------------------------------------- tests */

static void test_locality_by_hand(void **state) {
  (void)state;
  int64_t take[16];
  /* one expert on both ranks, sources balanced: everything stays local */
  smoe_split((int64_t[]){100, 100}, (int[]){0, 0}, 1, 2, 1, take, &scratch);
  assert_memory_equal(take, ((int64_t[]){100, 0, 0, 100}), sizeof(int64_t) * 4);
  /* sources unbalanced: rank 0 keeps what balance allows, sends the rest */
  smoe_split((int64_t[]){150, 50}, (int[]){0, 0}, 1, 2, 1, take, &scratch);
  assert_memory_equal(take, ((int64_t[]){100, 50, 0, 50}), sizeof(int64_t) * 4);
  /* rank 2's single expert sets the max (200): e0's tokens may all stay
   * local although 150 vs 10 is unbalanced */
  const int64_t c3[6] = {150, 0, 10, 0, 0, 200};
  smoe_split(c3, (int[]){0, 0, 1}, 2, 3, 1, take, &scratch);
  assert_memory_equal(take, ((int64_t[]){150, 0, 0, 0, 10, 0, 0, 0, 200}), sizeof(int64_t) * 9);
  /* both experts on both ranks, each rank's tokens for its own: local */
  smoe_split((int64_t[]){100, 0, 0, 100}, (int[]){0, 1, 1, 0}, 2, 2, 2, take, &scratch);
  assert_memory_equal(take, ((int64_t[]){100, 0, 0, 0, 0, 0, 100, 0}), sizeof(int64_t) * 8);
  /* a source without a local replica: to the replicas in slot order */
  smoe_split((int64_t[]){0, 0, 90}, (int[]){0, 0, -1}, 1, 3, 1, take, &scratch);
  assert_memory_equal(take, ((int64_t[]){0, 0, 0, 0, 0, 0, 45, 45, 0}), sizeof(int64_t) * 9);
}

static void test_even_by_hand(void **state) {
  (void)state;
  int64_t take[8];
  /* 7 tokens over 3 replicas: 3 2 2 in slot order; 1 token: to the first */
  smoe_split_even((int64_t[]){7, 1}, (int[]){0, 1, 0, -1, 0, -1}, 2, 1, 6, take, &scratch);
  assert_memory_equal(take, ((int64_t[]){3, 1, 2, 0, 2, 0}), sizeof(int64_t) * 6);
}

/* All tokens to one expert with a replica on every rank: near-perfect balance. */
static void test_extreme_routing(void **state) {
  (void)state;
  for (int G = 1; G <= 64; G = G < 16 ? G + 1 : G * 4) { /* 1 .. 16, 64 */
    const int E = 8, S = 2 * E / G > (E + 2 * G - 2) / G ? 2 * E / G
                                                         : (E + 2 * G - 2) / G; /* G - 1 spare */
    double loads[8] = {0};
    int r[8], *se = malloc(sizeof(int) * G * S);
    int64_t *counts = calloc(G * E, sizeof(int64_t)), *take = malloc(sizeof(int64_t) * G * G * S);
    loads[5] = 1;
    int64_t total = 0;
    for (int q = 0; q < G; q++) counts[q * E + 5] = 1000 + 37 * q, total += 1000 + 37 * q;
    smoe_plan_counts(SMOE_COUNTS_GREEDY, loads, E, G, S, r, &scratch);
    assert_int_equal(r[5], G);
    smoe_plan_slots(SMOE_SLOTS_BALANCED, loads, r, counts, E, G, S, se, &scratch);
    smoe_split(counts, se, E, G, S, take, &scratch);
    check_conserves(take, counts, se, E, G, S);
    assert_true(max_load(take, G, S) <= (total + G - 1) / G); /* imbalance ~ 1 */
    free(se), free(counts), free(take);
  }
}

static const int Gs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 64};

static void test_random_against_exact(void **state) {
  (void)state;
  int cases = 0, exact_checked = 0;
  for (size_t gi = 0; gi < sizeof Gs / sizeof *Gs; gi++)
    for (int E = 1; E <= 32; E = E * 2 + 1) { /* 1 3 7 15 31 */
      const int G = Gs[gi], per = (E + G - 1) / G;
      const int Ss[3] = {per, per + 1, 2 * E / G > per ? 2 * E / G : per};
      for (int si = 0; si < 3; si++)
        for (int kind = 0; kind < N_KINDS; kind++)
          for (int seed = 0; seed < (G >= 16 ? 2 : 5); seed++) {
            const int S = Ss[si], GS = G * S;
            uint64_t rs = smoe_mix64((uint64_t)(G * 7919 + E * 131 + S * 17 + kind * 3 + seed));
            int *se = malloc(sizeof(int) * GS), *r = malloc(sizeof(int) * E);
            int64_t *counts = malloc(sizeof(int64_t) * G * E),
                    *take = malloc(sizeof(int64_t) * G * GS);
            int64_t *take2 = malloc(sizeof(int64_t) * G * GS), *row = malloc(sizeof(int64_t) * GS);
            double *loads = calloc(E, sizeof(double));
            random_counts(&rs, kind, E, G, counts);
            if (seed % 2) { /* a placement by the planner, from noisy loads */
              for (int q = 0; q < G; q++)
                for (int e = 0; e < E; e++) loads[e] += counts[q * E + e] * (0.5 + uniform01(&rs));
              smoe_plan_counts(seed % 4 == 1, loads, E, G, S, r, &scratch);
              smoe_plan_slots((smoe_slot_rule_t)(next(&rs) % 3), loads, r, counts, E, G, S, se, &scratch);
            } else {
              random_placement(&rs, E, G, S, se);
            }
            smoe_split(counts, se, E, G, S, take, &scratch);
            check_conserves(take, counts, se, E, G, S);
            smoe_split(counts, se, E, G, S, take2, &scratch); /* deterministic */
            assert_memory_equal(take, take2, sizeof(int64_t) * G * GS);
            for (int q = 0; q < G; q++) { /* each row alone = the table's row */
              smoe_split_row(counts, se, E, G, S, q, row, &scratch);
              assert_memory_equal(row, take + q * GS, sizeof(int64_t) * GS);
            }
            if (G <= 16 || kind < 2) { /* the optimum (exact, so no 2% slack needed) */
              int64_t opt = exact_optimum(counts, se, E, G, S), got = max_load(take, G, S);
              if (got != opt)
                print_message("G %d E %d S %d kind %d seed %d: split %lld, optimum %lld\n", G, E, S,
                              kind, seed, (long long)got, (long long)opt);
              assert_true(got <= opt * 1.02 + 2);
              assert_int_equal(got, opt);
              exact_checked++;
            }
            smoe_split_even(counts, se, E, G, S, take, &scratch); /* the even split */
            check_conserves(take, counts, se, E, G, S);
            for (int q = 0; q < G; q++) {
              for (int gs = 0; gs < GS; gs++) { /* shares of one source differ by <= 1 */
                int e = se[gs];
                for (int hs = 0; hs < GS && e >= 0; hs++)
                  if (se[hs] == e) assert_true(llabs(take[q * GS + gs] - take[q * GS + hs]) <= 1);
              }
              smoe_split_even_row(counts, se, E, G, S, q, row, &scratch);
              assert_memory_equal(row, take + q * GS, sizeof(int64_t) * GS);
            }
            free(se), free(r), free(counts), free(take), free(take2), free(row), free(loads);
            cases++;
          }
    }
  print_message("  %d splits checked, %d against the exact optimum\n", cases, exact_checked);
  assert_true(cases > 1500 && exact_checked > 1000);
}

/* The load of each rank is what it receives; rank_load sums columns. */
static void test_rank_load(void **state) {
  (void)state;
  const int64_t take[2 * 4] = {1, 2, 3, 4, 10, 20, 30, 40};
  int64_t load[2];
  smoe_split_rank_load(take, 2, 2, load);
  assert_int_equal(load[0], 1 + 2 + 10 + 20);
  assert_int_equal(load[1], 3 + 4 + 30 + 40);
}


/* ------------------------------------------------- same-step shadows */

/* 8 experts on 4 ranks of 2 slots, one replica each (rank g: 2g, 2g+1). */
static const int ONE_EACH[8] = {0, 1, 2, 3, 4, 5, 6, 7};

static int64_t split_max_load(const int64_t *counts, const int *slots, int E, int G, int S) {
  int64_t *take = malloc(sizeof(int64_t) * (size_t)G * G * S), load[8], mx = 0;
  smoe_split(counts, slots, E, G, S, take, &scratch);
  smoe_split_rank_load(take, G, S, load);
  for (int g = 0; g < G; g++) mx = load[g] > mx ? load[g] : mx;
  free(take);
  return mx;
}

/* A jump to a cold expert: expert 5 (one replica, on rank 2) gets 200 tokens
 * from every source, the others 10: rank 2 computes 840 rows, the mean is
 * 270. Shadows of expert 5 go to the three other ranks, one each, and bring
 * the slowest rank to the split's optimum; an even step, or shadows that cost
 * more than they save, get none. */
static void test_shadow_by_hand(void **state) {
  (void)state;
  enum { E = 8, G = 4, S = 2, H = 1 };
  int64_t counts[G * E];
  for (int i = 0; i < G * E; i++) counts[i] = i % E == 5 ? 200 : 10;
  int all[G * (S + H)];
  const smoe_shadow_cost_t cheap = {1.0, 10.0, 1.0}, dear = {1.0, 1e9, 1.0};
  assert_int_equal(split_max_load(counts, ONE_EACH, E, G, S), 840);
  assert_int_equal(smoe_shadow_plan(counts, ONE_EACH, E, G, S, H, &cheap, all, &scratch), 3);
  for (int g = 0; g < G; g++) {
    assert_int_equal(all[g * (S + H)], ONE_EACH[g * S]); /* the planned slots unchanged */
    assert_int_equal(all[g * (S + H) + 1], ONE_EACH[g * S + 1]);
    assert_int_equal(all[g * (S + H) + 2], g == 2 ? -1 : 5); /* a shadow of 5 on every other rank */
  }
  assert_int_equal(split_max_load(counts, all, E, G, S + H), 270); /* 1080 rows over 4 ranks */
  /* too dear: none, the planned placement as it was */
  assert_int_equal(smoe_shadow_plan(counts, ONE_EACH, E, G, S, H, &dear, all, &scratch), 0);
  for (int g = 0; g < G; g++) assert_int_equal(all[g * (S + H) + 2], -1);
  /* an even step: nothing to gain */
  for (int i = 0; i < G * E; i++) counts[i] = 10;
  assert_int_equal(smoe_shadow_plan(counts, ONE_EACH, E, G, S, H, &cheap, all, &scratch), 0);
  /* no shadow slots: none */
  for (int i = 0; i < G * E; i++) counts[i] = i % E == 5 ? 200 : 10;
  assert_int_equal(smoe_shadow_plan(counts, ONE_EACH, E, G, S, 0, &cheap, all, &scratch), 0);
}

/* Hedged loads: a steady expert is planned at its mean, one that swings at
 * its mean plus z standard deviations; the EMAs start at the first step. */
static void test_hedge_by_hand(void **state) {
  (void)state;
  double mean[2], var[2], out[2];
  const double a[2] = {100, 0}, b[2] = {100, 200};
  smoe_hedge_update(mean, var, a, 2, 0.5, 1);
  assert_true(mean[0] == 100 && mean[1] == 0 && var[0] == 0 && var[1] == 0);
  smoe_hedge_update(mean, var, b, 2, 0.5, 0);
  assert_true(mean[0] == 100 && var[0] == 0);
  assert_true(mean[1] == 100 && var[1] == 0.5 * 200 * 200); /* d = 200 before the update */
  smoe_hedge_loads(mean, var, 2, 1.0, out);
  assert_true(out[0] == 100 && fabs(out[1] - (100 + sqrt(20000.0))) < 1e-9);
  smoe_hedge_loads(mean, var, 2, 0.0, out);
  assert_true(out[0] == 100 && out[1] == 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_locality_by_hand), cmocka_unit_test(test_even_by_hand),
      cmocka_unit_test(test_extreme_routing),  cmocka_unit_test(test_random_against_exact),
      cmocka_unit_test(test_rank_load),        cmocka_unit_test(test_shadow_by_hand),
      cmocka_unit_test(test_hedge_by_hand),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
