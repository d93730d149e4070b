/* test_plan: the planner (replica counts and slot placement) on hand-worked
 * cases and on thousands of randomised ones: loads uniform, Zipf 1.0 and
 * 1.5, one hot expert, all tokens to one expert, all zero; G in 1..16 and 64;
 * S in {ceil(E/G), +1, 2E/G}. Checks the invariants (counts in [1, G] summing
 * to min(G*S, G*E); every expert placed, on distinct ranks, no slot double-
 * booked), the optimality of the greedy counts, determinism, the src tie-
 * break, and that `balanced` beats `eplb` on balance under the split. */
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
#include "split.h"

static smoe_arena_t scratch; /* the planner's, split's and dispatch's temporary arrays */

enum { UNIFORM, ZIPF10, ZIPF15, HOT, ONE, ZEROS, N_KINDS };

static double uniform01(uint64_t *r) {
  *r = smoe_mix64(*r);
  return (double)(*r >> 11) * 0x1.0p-53;
}

/* Loads of one kind, expert ids shuffled. */
static void gen_loads(int kind, int E, uint64_t seed, double *loads) {
  uint64_t r = seed;
  for (int e = 0; e < E; e++) {
    double u = uniform01(&r);
    switch (kind) {
      case UNIFORM:
        loads[e] = floor(1000 * u);
        break;
      case ZIPF10:
        loads[e] = floor(10000.0 / (e + 1));
        break;
      case ZIPF15:
        loads[e] = floor(10000.0 / pow(e + 1, 1.5));
        break;
      case HOT:
        loads[e] = e == 0 ? 50000 : floor(100 + 100 * u);
        break;
      case ONE:
        loads[e] = e == 0 ? 8192 : 0;
        break;
      default:
        loads[e] = 0;
    }
  }
  for (int e = E - 1; e > 0; e--) {
    int j = (int)(uniform01(&r) * (e + 1));
    double t = loads[e];
    loads[e] = loads[j], loads[j] = t;
  }
}

/* Checks a placement: every replica placed, distinct ranks, empty slots only
 * where the slots outnumber the replicas. */
static void check_placement(const int *se, const int *replicas, int E, int G, int S) {
  int *seen = calloc((size_t)E, sizeof(int));
  int64_t sum = 0;
  for (int e = 0; e < E; e++) sum += replicas[e];
  int64_t empty = 0;
  for (int g = 0; g < G; g++)
    for (int s = 0; s < S; s++) {
      int e = se[g * S + s];
      assert_true(e >= -1 && e < E);
      if (e < 0) {
        empty++;
        continue;
      }
      seen[e]++;
      for (int t = 0; t < s; t++) assert_int_not_equal(se[g * S + t], e); /* distinct ranks */
    }
  for (int e = 0; e < E; e++) assert_int_equal(seen[e], replicas[e]); /* every replica placed */
  assert_int_equal(empty, (int64_t)G * S - sum);
  free(seen);
}

static void check_counts(const int *r, int E, int G, int S) {
  int64_t sum = 0, want = (int64_t)G * (S < E ? S : E);
  for (int e = 0; e < E; e++) {
    assert_in_range(r[e], 1, G);
    sum += r[e];
  }
  assert_int_equal(sum, want);
}

static void test_counts_by_hand(void **state) {
  (void)state;
  int r[4];
  /* proportional: goals 4.8 2.4 0.8 0 -> 4 2 1 1 (8 slots) */
  smoe_plan_counts(SMOE_COUNTS_PROPORTIONAL, (double[]){6, 3, 1, 0}, 4, 4, 2, r, &scratch);
  assert_memory_equal(r, ((int[]){4, 2, 1, 1}), sizeof(int) * 4);
  /* proportional: goals 4/3 each -> 1 1 1, the spare slot to the lower index */
  smoe_plan_counts(SMOE_COUNTS_PROPORTIONAL, (double[]){1, 1, 1}, 3, 2, 2, r, &scratch);
  assert_memory_equal(r, ((int[]){2, 1, 1}), sizeof(int) * 3);
  /* proportional, clamped: goals 6.4 0.4 0.4 0.4 0.4 (8 slots of 4 ranks)
   * -> 4 (at most G) 1 1 1 1 */
  int r5[5];
  smoe_plan_counts(SMOE_COUNTS_PROPORTIONAL, (double[]){16, 1, 1, 1, 1}, 5, 4, 2, r5, &scratch);
  assert_memory_equal(r5, ((int[]){4, 1, 1, 1, 1}), sizeof r5);
  /* proportional, too many: goals 4 4 0 0 0 -> 4 4 1 1 1 = 11 > 8: -1 from
   * the smallest goal - r above 1 (ties: the higher index): e1, e0, e1 */
  smoe_plan_counts(SMOE_COUNTS_PROPORTIONAL, (double[]){10, 10, 0, 0, 0}, 5, 4, 2, r5, &scratch);
  assert_memory_equal(r5, ((int[]){3, 2, 1, 1, 1}), sizeof r5);
  /* greedy: 10/1 -> 2, 5 -> 3, then 4/1 beats 10/3 -> r1 = 2, then 10/3 -> 4 */
  smoe_plan_counts(SMOE_COUNTS_GREEDY, (double[]){10, 4, 1, 1}, 4, 4, 2, r, &scratch);
  assert_memory_equal(r, ((int[]){4, 2, 1, 1}), sizeof(int) * 4);
  /* greedy, all zero: round robin, not all to expert 0 */
  smoe_plan_counts(SMOE_COUNTS_GREEDY, (double[]){0, 0, 0, 0}, 4, 4, 2, r, &scratch);
  assert_memory_equal(r, ((int[]){2, 2, 2, 2}), sizeof(int) * 4);
  /* S > E: every expert on every rank */
  smoe_plan_counts(SMOE_COUNTS_GREEDY, (double[]){5, 0, 1}, 3, 2, 5, r, &scratch);
  assert_memory_equal(r, ((int[]){2, 2, 2}), sizeof(int) * 3);
  /* greedy never goes above G */
  smoe_plan_counts(SMOE_COUNTS_GREEDY, (double[]){100, 1, 1, 1}, 4, 2, 3, r, &scratch);
  assert_memory_equal(r, ((int[]){2, 2, 1, 1}), sizeof(int) * 4);
}

static void test_slots_by_hand(void **state) {
  (void)state;
  int se[8];
  /* contiguous, the paper's: r = 3 2 2 1 on 4 ranks of 2 */
  smoe_plan_slots(SMOE_SLOTS_CONTIGUOUS, (double[]){0, 0, 0, 0}, (int[]){3, 2, 2, 1}, NULL, 4, 4, 2,
                  se, &scratch);
  assert_memory_equal(se, ((int[]){0, 1, 0, 1, 0, 2, 2, 3}), sizeof se);
  /* contiguous stuck: e2 needs 2 ranks, only rank 1 has room -> a swap */
  int se4[4];
  smoe_plan_slots(SMOE_SLOTS_CONTIGUOUS, (double[]){0, 0, 0}, (int[]){1, 1, 2}, NULL, 3, 2, 2, se4, &scratch);
  check_placement(se4, (int[]){1, 1, 2}, 3, 2, 2);
  /* eplb: loads 8 6 4 3, r 1 2 1 2 on 3 ranks of 2: load per replica 8 3 4
   * 1.5; order e0, e2, e1, e3: e0 -> rank 0 (8); e2 -> rank 1 (4); e1 -> the
   * two least loaded, ranks 2 and 1 (3, 7); e3 -> the ranks with room, 0, 2 */
  int se6[6];
  smoe_plan_slots(SMOE_SLOTS_EPLB, (double[]){8, 6, 4, 3}, (int[]){1, 2, 1, 2}, NULL, 4, 3, 2, se6, &scratch);
  assert_memory_equal(se6, ((int[]){0, 3, 2, 1, 1, 3}), sizeof se6);
}

/* With equal loads every rank ties: the expert goes where its tokens come from. */
static void test_src_ties(void **state) {
  (void)state;
  enum { E = 6, G = 6 };
  const int perm[E] = {3, 0, 5, 1, 4, 2};
  int64_t src[G * E];
  for (int g = 0; g < G; g++)
    for (int e = 0; e < E; e++) src[g * E + e] = g == perm[e] ? 100 : 1;
  double loads[E] = {5, 5, 5, 5, 5, 5};
  int r[E] = {1, 1, 1, 1, 1, 1}, se[G];
  for (int rule = SMOE_SLOTS_EPLB; rule <= SMOE_SLOTS_BALANCED; rule++) {
    smoe_plan_slots(rule, loads, r, src, E, G, 1, se, &scratch);
    for (int e = 0; e < E; e++) assert_int_equal(se[perm[e]], e);
  }
  /* multi-replica: expert 0 with 3 replicas on 8 ranks of 1 slot, the
   * others (no load) at home: e0's replicas go to the three free ranks that
   * sent it most */
  double l2[4] = {30, 0, 0, 0};
  int r2[4] = {3, 1, 1, 1}, se2[8];
  int64_t src2[8 * 4] = {0};
  src2[1 * 4] = 50, src2[4 * 4] = 40, src2[5 * 4] = 30, src2[0] = 1, src2[7 * 4] = 29;
  src2[0 * 4 + 1] = 10, src2[2 * 4 + 2] = 10, src2[3 * 4 + 3] = 10;
  smoe_plan_slots(SMOE_SLOTS_BALANCED, l2, r2, src2, 4, 8, 1, se2, &scratch);
  assert_int_equal(se2[0], 1), assert_int_equal(se2[2], 2), assert_int_equal(se2[3], 3);
  assert_int_equal(se2[1], 0), assert_int_equal(se2[4], 0), assert_int_equal(se2[5], 0);
}

/* The greedy counts minimise max load / replicas: an expert's last replica
 * was given when its load per replica was the highest, so no expert with
 * r > 1 has load / (r - 1) below the final maximum. */
static void check_greedy_optimal(const double *loads, const int *r, int E, int G) {
  double M = 0; /* over the experts that could still take a replica */
  for (int e = 0; e < E; e++)
    if (r[e] < G) M = fmax(M, loads[e] / r[e]);
  for (int e = 0; e < E; e++)
    if (r[e] > 1) assert_true(loads[e] / (r[e] - 1) >= M * (1 - 1e-12));
}

static const int Gs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 64};
static const int Es[] = {1, 3, 8, 16, 33, 64, 256};

static void test_random_invariants(void **state) {
  (void)state;
  int cases = 0;
  for (size_t gi = 0; gi < sizeof Gs / sizeof *Gs; gi++)
    for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ei++) {
      const int G = Gs[gi], E = Es[ei], per = (E + G - 1) / G;
      const int Ss[3] = {per, per + 1, 2 * E / G > per ? 2 * E / G : per},
                maxS = per + 1 > Ss[2] ? per + 1 : Ss[2];
      double *loads = malloc(sizeof(double) * E);
      int *r = malloc(sizeof(int) * E), *se = malloc(sizeof(int) * G * maxS);
      int *se2 = malloc(sizeof(int) * G * maxS);
      int64_t *src = malloc(sizeof(int64_t) * G * E);
      for (int si = 0; si < 3; si++)
        for (int kind = 0; kind < N_KINDS; kind++)
          for (int seed = 0; seed < (G * E > 4096 ? 1 : 3); seed++) {
            const int S = Ss[si];
            uint64_t rs = smoe_mix64((uint64_t)(G * 1000003 + E * 1009 + S * 17 + kind * 5 + seed));
            gen_loads(kind, E, rs, loads);
            for (int i = 0; i < G * E; i++) src[i] = (int64_t)(uniform01(&rs) * 100);
            for (int cr = 0; cr < 2; cr++) {
              smoe_plan_counts(cr, loads, E, G, S, r, &scratch);
              check_counts(r, E, G, S);
              if (cr == SMOE_COUNTS_GREEDY) check_greedy_optimal(loads, r, E, G);
              for (int rule = 0; rule < 3; rule++) {
                const int64_t *sp = seed == 1 ? NULL : src;
                smoe_plan_slots(rule, loads, r, sp, E, G, S, se, &scratch);
                check_placement(se, r, E, G, S);
                smoe_plan_slots(rule, loads, r, sp, E, G, S, se2, &scratch); /* deterministic */
                assert_memory_equal(se, se2, sizeof(int) * G * S);
                cases++;
              }
            }
          }
      free(loads), free(r), free(se), free(se2), free(src);
    }
  print_message("  %d placements checked\n", cases);
  assert_true(cases > 2000);
}

/* Balance under the split (max rank tokens / mean), balanced vs eplb, over
 * Zipf and hot-expert loads, planned from loads that the step's counts miss
 * by +-30% per expert: at S = E/G + 1 (few spare slots) balanced must be
 * clearly better on average, at S = 2E/G no worse. */
static double mean_imbalance(int rule, const int (*cfg)[3], int ncfg) {
  double sum = 0;
  int n = 0;
  for (int c = 0; c < ncfg; c++) {
    const int G = cfg[c][0], E = cfg[c][1], S = cfg[c][2];
    double *loads = malloc(sizeof(double) * E), *noise = malloc(sizeof(double) * E);
    int *r = malloc(sizeof(int) * E), *se = malloc(sizeof(int) * G * S);
    int64_t *counts = malloc(sizeof(int64_t) * G * E), *take = malloc(sizeof(int64_t) * G * G * S);
    int64_t *load = malloc(sizeof(int64_t) * G);
    for (int kind = ZIPF10; kind <= HOT; kind++)
      for (int seed = 0; seed < 10; seed++) {
        uint64_t rs = smoe_mix64((uint64_t)(c * 7919 + kind * 31 + seed));
        gen_loads(kind, E, rs, loads);
        for (int e = 0; e < E; e++) noise[e] = 0.7 + 0.6 * uniform01(&rs);
        int64_t total = 0;
        for (int q = 0; q < G; q++)
          for (int e = 0; e < E; e++) {
            counts[q * E + e] = (int64_t)(loads[e] * noise[e] * (0.9 + 0.2 * uniform01(&rs)));
            total += counts[q * E + e];
          }
        smoe_plan_counts(SMOE_COUNTS_GREEDY, loads, E, G, S, r, &scratch);
        smoe_plan_slots(rule, loads, r, NULL, E, G, S, se, &scratch);
        smoe_split(counts, se, E, G, S, take, &scratch);
        smoe_split_rank_load(take, G, S, load);
        int64_t mx = 0;
        for (int g = 0; g < G; g++) mx = load[g] > mx ? load[g] : mx;
        sum += (double)mx * G / (double)(total ? total : 1), n++;
      }
    free(loads), free(noise), free(r), free(se), free(counts), free(take), free(load);
  }
  return sum / n;
}

static void test_balanced_beats_eplb(void **state) {
  (void)state;
  const int few[][3] = {{8, 64, 9}, {16, 64, 5}, {32, 128, 5}, {64, 256, 5}};
  const int many[][3] = {{4, 16, 8}, {8, 64, 16}, {16, 64, 8}, {64, 256, 8}};
  double e1 = mean_imbalance(SMOE_SLOTS_EPLB, few, 4), b1 = mean_imbalance(SMOE_SLOTS_BALANCED, few, 4);
  double e2 = mean_imbalance(SMOE_SLOTS_EPLB, many, 4);
  double b2 = mean_imbalance(SMOE_SLOTS_BALANCED, many, 4);
  print_message("  mean imbalance, S = E/G + 1: eplb %.4f, balanced %.4f; S = 2E/G: eplb %.4f, "
                "balanced %.4f\n", e1, b1, e2, b2);
  assert_true(b1 < e1 - 0.03);
  assert_true(b2 <= e2 + 0.002);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts_by_hand),
      cmocka_unit_test(test_slots_by_hand),
      cmocka_unit_test(test_src_ties),
      cmocka_unit_test(test_random_invariants),
      cmocka_unit_test(test_balanced_beats_eplb),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
