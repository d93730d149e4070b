/* test_whatif: the policy replay on hand-made logs whose imbalance, drops,
 * bytes and moves are worked out by hand below, on skewed and uniform logs
 * (swiftmoe never worse than static, both 1 on uniform loads), against the
 * engine's own drop rule (symi), and the parser's messages. */
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

#include "policy.h"
#include "whatif.h"

/* a == b within tol, both printed when not (cmocka 1.1 has no double assert) */
#define assert_double_equal(a, b, tol) check_close((a), (b), (tol), #a, __FILE__, __LINE__)
static void check_close(double a, double b, double tol, const char *what, const char *file,
                        int line) {
  if (!(fabs(a - b) <= tol)) fail_msg("%s:%d: %s = %.17g, expected %.17g", file, line, what, a, b);
}

static smoe_whatif_policy_t parse(const char *spec) {
  smoe_whatif_policy_t p;
  smoe_err_t err = {{0}};
  if (smoe_whatif_parse(spec, &p, &err) != 0) fail_msg("%s: %s", spec, err.msg);
  return p;
}

static smoe_whatif_result_t run(const smoe_whatif_log_t *log, const char *spec) {
  smoe_whatif_policy_t p = parse(spec);
  smoe_whatif_result_t r;
  smoe_err_t err = {{0}};
  if (smoe_whatif_run(log, &p, &r, &err) != 0) fail_msg("%s: %s", spec, err.msg);
  assert_int_equal(r.steps, log->n);
  assert_true(r.imb_mean >= 1 - 1e-12 && r.imb_mean <= r.imb_max + 1e-12);
  assert_true(r.imb_p95 >= 1 - 1e-12 && r.imb_p95 <= r.imb_max);
  return r;
}

static uint64_t next(uint64_t *r) {
  return *r = smoe_mix64(*r);
}

/* A log of n steps where each of G ranks routes N tokens to K distinct
 * experts each, expert e drawn with weight w[e] (uniform when w is NULL). */
static int64_t *make_log(int n, int L, int E, int G, int K, int N, const double *w, uint64_t seed) {
  int64_t *src = calloc((size_t)n * L * G * E, sizeof(int64_t));
  double total = 0;
  for (int e = 0; e < E; e++) total += w ? w[e] : 1;
  uint64_t r = seed;
  for (int t = 0; t < n; t++)
    for (int l = 0; l < L; l++)
      for (int q = 0; q < G; q++) {
        int64_t *row = src + (((size_t)t * L + l) * G + q) * E;
        for (int i = 0; i < N; i++) {
          int chosen[8], k = 0;
          while (k < K) {
            double u = (double)(next(&r) >> 11) * 0x1.0p-53 * total, acc = 0;
            int e = 0;
            for (; e < E - 1; e++) {
              acc += w ? w[e] : 1;
              if (u < acc) break;
            }
            int dup = 0;
            for (int j = 0; j < k; j++) dup |= chosen[j] == e;
            if (!dup) chosen[k++] = e, row[e]++;
          }
        }
      }
  return src;
}

/* static, G = 2, E = 4 (rank 0: e0 e1, rank 1: e2 e3), L = 1, K = 1, N = 10.
 *   step 0: rank 0 routes (6 2 1 1), rank 1 (3 3 2 2): the ranks compute
 *     6+2+3+3 = 14 and 1+1+2+2 = 6, imbalance 14 / 10 = 1.4; off-rank:
 *     rank 0's 1+1 and rank 1's 3+3 = 8 rows;
 *   step 1: both route (1 1 4 4): 4 and 16, imbalance 16 / 10 = 1.6;
 *     off-rank 4+4 + 1+1 = 10 rows.
 * mean 1.5, p95 (nearest rank: the 2nd of 2) = max = 1.6; dispatch per step
 * 2 x row_bytes x (8 + 10) / 2 = 18 x 3 = 54 bytes; nothing dropped, no
 * weights moved. */
static void test_static_by_hand(void **state) {
  const int64_t src[] = {6, 2, 1, 1, 3, 3, 2, 2, /* step 1 */ 1, 1, 4, 4, 1, 1, 4, 4};
  smoe_whatif_log_t log = {2, 1, 4, 2, 1, 10, src, 3.0, 100.0, 200.0};
  smoe_whatif_result_t r = run(&log, "static");
  assert_double_equal(r.imb_mean, 1.5, 1e-12);
  assert_double_equal(r.imb_p95, 1.6, 1e-12);
  assert_double_equal(r.imb_max, 1.6, 1e-12);
  assert_double_equal(r.dropped_frac, 0, 0);
  assert_double_equal(r.dispatch_bytes, 54, 1e-9);
  assert_double_equal(r.weights_bytes, 0, 0);
  assert_double_equal(r.state_bytes, 0, 0);
  assert_double_equal(r.churn, 0, 0);
  assert_double_equal(r.peak_extra_bytes, 0, 0);
  /* E not divisible by G: the static placement says so */
  int64_t six[6 * 4] = {0};
  smoe_whatif_log_t bad = {1, 1, 6, 4, 1, 0, six, 1, 1, 1};
  smoe_whatif_policy_t p = parse("static");
  smoe_whatif_result_t out;
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_whatif_run(&bad, &p, &out, &err), -1);
  assert_non_null(strstr(err.msg, "policy \"static\""));
  assert_non_null(strstr(err.msg, "divisible"));
}

/* capacity, G = 2, E = 4, K = 1, N = 20, one step: rank 0 routes
 * (12 4 2 2), rank 1 (5 5 5 5).
 *   capacity:1.0: cap = max(4, ceil(1.0 x 1 x 20 / 4)) = 5 per expert per
 *     rank: rank 0 keeps (5 4 2 2), drops 12 - 5 = 7; rank 1 keeps all.
 *     dropped 7 / 40 = 0.175. Ranks compute (5+4) + (5+5) = 19 and
 *     (2+2) + (5+5) = 14: imbalance 19 / 16.5.
 *   capacity:1.5: cap = ceil(1.5 x 20 / 4) = ceil(7.5) = 8: rank 0 drops
 *     12 - 8 = 4, 4 / 40 = 0.1.
 *   capacity:0.1: cap = max(4, ceil(0.5)) = 4 (placement.min_capacity):
 *     rank 0 drops 8 + 0 = 8, rank 1 1 each = 4: 12 / 40 = 0.3. */
static void test_capacity_by_hand(void **state) {
  const int64_t src[] = {12, 4, 2, 2, 5, 5, 5, 5};
  smoe_whatif_log_t log = {1, 1, 4, 2, 1, 20, src, 1, 1, 1};
  smoe_whatif_result_t r = run(&log, "capacity");
  assert_double_equal(r.dropped_frac, 0.175, 1e-12);
  assert_double_equal(r.imb_mean, 19 / 16.5, 1e-12);
  r = run(&log, "capacity:1.0");
  assert_double_equal(r.dropped_frac, 0.175, 1e-12);
  r = run(&log, "capacity:1.5");
  assert_double_equal(r.dropped_frac, 0.1, 1e-12);
  r = run(&log, "capacity:factor=0.1");
  assert_double_equal(r.dropped_frac, 0.3, 1e-12);
  /* static on the same log computes all: 12+4+5+5 = 26 and 4+10 = 14 */
  r = run(&log, "static");
  assert_double_equal(r.dropped_frac, 0, 0);
  assert_double_equal(r.imb_mean, 26 / 20.0, 1e-12);
}

/* swiftmoe re-plans from the last step and splits optimally: on a skewed
 * log (one expert draws ~ a third of the choices) it is never more
 * imbalanced than static, and drops nothing. On uniform loads both are
 * perfectly balanced: rebalancing buys nothing. */
static void test_swiftmoe_vs_static(void **state) {
  enum { n = 30, L = 2, E = 8, G = 4, K = 2, N = 64 };
  const double w[E] = {8, 3, 2, 1.5, 1, 1, 0.5, 0.5};
  int64_t *src = make_log(n, L, E, G, K, N, w, 42);
  smoe_whatif_log_t log = {n, L, E, G, K, N, src, 1024, 1e6, 3e6};
  smoe_whatif_result_t st = run(&log, "static"), sw = run(&log, "swiftmoe");
  print_message("  skewed: static %.3f (max %.3f), swiftmoe %.3f (max %.3f)\n", st.imb_mean,
                st.imb_max, sw.imb_mean, sw.imb_max);
  assert_true(st.imb_mean > 1.3); /* skewed enough to matter */
  assert_true(sw.imb_mean <= st.imb_mean);
  assert_true(sw.imb_max <= st.imb_max);
  assert_double_equal(sw.dropped_frac, 0, 0);
  assert_double_equal(sw.state_bytes, 0, 0);
  /* the sharded refill: every slot of every layer, (G-1)/G of an expert;
   * S = max(E/G + 1, 2E/G) = 4 slots per rank, all filled (G S = 16 <= G E) */
  assert_double_equal(sw.weights_bytes, (double)L * G * 4 * (G - 1) / G * 1e6, 1e-3);
  smoe_whatif_result_t ema = run(&log, "swiftmoe:ema=0.5"), s6 = run(&log, "swiftmoe:S=6");
  assert_double_equal(ema.dropped_frac, 0, 0);
  assert_true(s6.imb_mean <= st.imb_mean);
  free(src);

  /* uniform: every rank routes 10 tokens to every expert */
  int64_t *flat = malloc(sizeof(int64_t) * n * L * G * E);
  for (int i = 0; i < n * L * G * E; i++) flat[i] = 10;
  log.src = flat, log.tokens_per_rank = 40; /* K N = 2 x 40 = 80 = 8 experts x 10 */
  st = run(&log, "static"), sw = run(&log, "swiftmoe");
  assert_double_equal(st.imb_mean, 1.0, 0);
  assert_double_equal(st.imb_max, 1.0, 0);
  assert_double_equal(sw.imb_mean, 1.0, 0);
  assert_double_equal(sw.imb_max, 1.0, 0);
  assert_double_equal(sw.dropped_frac, 0, 0);
  /* eplb on uniform loads keeps its first plan: nothing moves, only the
   * replicas beyond the first get the update: (G S - E) per layer */
  smoe_whatif_result_t ep = run(&log, "eplb:every=5");
  assert_int_equal(ep.moves, 0);
  assert_int_equal(ep.replans, (n - 1) / 5);
  assert_double_equal(ep.state_bytes, 0, 0);
  assert_double_equal(ep.churn, 0, 0);
  assert_double_equal(ep.weights_bytes, (double)L * (G * 4 - E) * 1e6, 1e-3);
  free(flat);
}

/* flexmoe:every=10 with S=3, G = 2, E = 4, K = 1, N = 50, L = 1, two equal
 * steps: rank 0 routes (10 10 50 10), rank 1 (0 0 50 10); T = (10 10 100 20).
 * row_bytes 1, expert_bytes 100, state_bytes 100: a move costs 200.
 * Step 0 (eplb's plan from equal loads): greedy counts r = (2 2 1 1), packed
 * heaviest per replica first: rank 0 holds e2 e0 e1, rank 1 e3 e0 e1. Even
 * split: rank 0 computes 100 + 5 + 5 = 110, rank 1 20 + 5 + 5 = 30;
 * imbalance 110 / 70 = 11/7 > 1.25: step 1 re-plans on T.
 *   move 1: h = e2 (100 per replica), c = e0 (5; tie with e1, lower index);
 *     e0's slot on rank 1 becomes e2's: loads 100/2 + 10 + 5 = 65 and
 *     20 + 50 + 5 = 75; max 110 -> 75, gain 35 x 10 steps x 1 = 350 > 200:
 *     made.
 *   move 2: h = e3 (20), c = e1 (5): e1's slot on rank 0 becomes e3's: both
 *     ranks 70; max 75 -> 70, gain 5 x 10 = 50 < 200: not made.
 * Step 1 computes 65 and 75: imbalance 75 / 70 = 15/14.
 * Bytes: state 1 move x 100 over 2 steps = 50 per step; weights: the extra
 * replicas' update every step (2 x 100 at step 0, 2 x 100 at step 1) + the
 * move's weights 100 = 500 / 2 = 250; peak 1 replica x (100 + 100) = 200;
 * churn 1 slot at step 1: 0.5 per step. Off-rank rows: step 0 rank 0 sends
 * 5 (e0) + 5 (e1) + 10 (e3), rank 1 50 (e2): 70; step 1 rank 0 5 (e1) + 25
 * (e2) + 10 (e3), rank 1 25 (e2): 65; dispatch 2 x (70 + 65) / 2 = 135. */
static void test_flexmoe_one_move(void **state) {
  const int64_t src[] = {10, 10, 50, 10, 0, 0, 50, 10, /* step 1 */ 10, 10, 50, 10, 0, 0, 50, 10};
  smoe_whatif_log_t log = {2, 1, 4, 2, 1, 50, src, 1.0, 100.0, 100.0};
  smoe_whatif_result_t r = run(&log, "flexmoe:every=10,S=3");
  assert_int_equal(r.moves, 1);
  assert_int_equal(r.replans, 1);
  assert_double_equal(r.imb_mean, (11 / 7.0 + 15 / 14.0) / 2, 1e-12);
  assert_double_equal(r.imb_max, 11 / 7.0, 1e-12);
  assert_double_equal(r.state_bytes, r.moves * 100.0 / 2, 1e-9);
  assert_double_equal(r.state_bytes, 50, 1e-9);
  assert_double_equal(r.weights_bytes, 250, 1e-9);
  assert_double_equal(r.peak_extra_bytes, 200, 1e-9);
  assert_double_equal(r.churn, 0.5, 1e-12);
  assert_double_equal(r.dispatch_bytes, 135, 1e-9);
  assert_double_equal(r.dropped_frac, 0, 0);
  /* a move twice as dear (400 > 350) is not worth it: nothing moves */
  log.state_bytes = 300;
  r = run(&log, "flexmoe:every=10,S=3");
  assert_int_equal(r.moves, 0);
  assert_double_equal(r.state_bytes, 0, 0);
  assert_double_equal(r.peak_extra_bytes, 0, 0);
  /* the threshold above the imbalance: no re-plan before step 10 */
  log.state_bytes = 100;
  r = run(&log, "flexmoe:every=10,threshold=1.6,S=3");
  assert_int_equal(r.replans, 0);
  assert_int_equal(r.moves, 0);
}

/* eplb and flexmoe on a skewed log: the bytes follow the moves. */
static void test_moves_and_bytes(void **state) {
  enum { n = 40, L = 2, E = 8, G = 4, K = 2, N = 64 };
  const double w[E] = {8, 3, 2, 1.5, 1, 1, 0.5, 0.5};
  int64_t *src = make_log(n, L, E, G, K, N, w, 7);
  smoe_whatif_log_t log = {n, L, E, G, K, N, src, 1, 10, 30};
  smoe_whatif_result_t ep = run(&log, "eplb:10"), ev = run(&log, "eplb:every=10,ema=0.8");
  assert_int_equal(ep.replans, 3); /* steps 10, 20, 30 */
  assert_true(ep.moves > 0);       /* skew: the first re-plan leaves equal loads behind */
  assert_double_equal(ep.state_bytes * n, ep.moves * 30.0, 1e-6);
  assert_true(ep.peak_extra_bytes >= 40 && ep.peak_extra_bytes <= ep.moves * 40.0);
  assert_double_equal(ev.dropped_frac, 0, 0);
  smoe_whatif_result_t fx = run(&log, "flexmoe:5");
  assert_true(fx.moves > 0);
  assert_double_equal(fx.state_bytes * n, fx.moves * 30.0, 1e-6);
  assert_double_equal(fx.dropped_frac, 0, 0);
  /* flexmoe changes a slot only by moving a replica into it (a slot moved
   * into twice in one re-plan counts once) */
  assert_true(fx.churn > 0 && fx.churn * n * L <= (double)fx.moves + 1e-9);
  free(src);
}

/* symi's drops are the engine's: by hand, then against smoe_drops_quota
 * driven here step by step by the engine's own symi policy. G = 2, E = 4,
 * K = 1, N = 20: S = 4, proportional counts from equal loads give every
 * expert 2 replicas; each keeps 2 x ceil(1.0 x 1 x 40 / 8) = 10. Ranks route
 * (12 4 2 2) and (5 5 5 5): e0 has 17, drops 7: 7 / 40 = 0.175. symi:2 keeps
 * 2 x 10 = 20 each: nothing dropped. */
static void test_symi_drops(void **state) {
  const int64_t src[] = {12, 4, 2, 2, 5, 5, 5, 5};
  smoe_whatif_log_t log = {1, 1, 4, 2, 1, 20, src, 1, 1, 1};
  assert_double_equal(run(&log, "symi").dropped_frac, 0.175, 1e-12);
  assert_double_equal(run(&log, "symi:2").dropped_frac, 0, 0);

  enum { n = 12, L = 2, E = 8, G = 4, K = 2, N = 32 };
  const double w[E] = {6, 3, 2, 1, 1, 1, 0.5, 0.5};
  int64_t *big = make_log(n, L, E, G, K, N, w, 3);
  smoe_whatif_log_t lg = {n, L, E, G, K, N, big, 1, 1, 1};
  smoe_whatif_result_t r = run(&lg, "symi:factor=1.1,ema=0.5");
  /* the same policy, step by step as step.c drives it */
  smoe_err_t err;
  const int S = smoe_slots_per_rank("symi", 0, E, G, &err);
  smoe_policy_t pol;
  smoe_placement_t pl[2];
  assert_int_equal(smoe_policy_init(&pol, "symi", L, E, G, S, 0, 0.5, &err), 0);
  smoe_placement_init(&pl[0], L, E, G, S);
  smoe_placement_init(&pl[1], L, E, G, S);
  const smoe_drops_t d = smoe_policy_drops(SMOE_POLICY_SYMI, 1.1, 4, "position");
  int64_t dropped = 0, routed = 0, counts[L * E], allowed[L * G * E];
  for (int t = 0; t < n; t++) {
    if (t == 0)
      assert_int_equal(smoe_policy_first(&pol, &pl[0], &err), 0);
    else
      smoe_policy_next(&pol, counts, allowed, t, &pl[(t + 1) % 2], &pl[t % 2]);
    memset(counts, 0, sizeof counts);
    for (int l = 0; l < L; l++) {
      const int64_t *c = big + ((size_t)t * L + l) * G * E;
      for (int i = 0; i < G * E; i++) counts[l * E + i % E] += c[i], routed += c[i];
      dropped += smoe_drops_quota(&d, c, G, E, K, (int64_t)G * N, pl[t % 2].replicas + l * E, G, S,
                                  allowed + l * G * E);
    }
  }
  print_message("  symi: %lld of %lld dropped\n", (long long)dropped, (long long)routed);
  assert_true(dropped > 0);
  assert_double_equal(r.dropped_frac, (double)dropped / routed, 1e-15);
  smoe_placement_free(&pl[0]);
  smoe_placement_free(&pl[1]);
  smoe_policy_free(&pol);
  free(big);
}

static void expect_error(const char *spec, const char *part) {
  smoe_whatif_policy_t p;
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_whatif_parse(spec, &p, &err), -1);
  if (!strstr(err.msg, part)) fail_msg("%s: \"%s\" does not name %s", spec, err.msg, part);
}


/* Same-step shadows on a log with a jump: 8 experts on 4 ranks, loads even
 * (16 tokens from every rank to every expert) except step 5, where every
 * rank sends 400 to expert 3. Planned from step 4's even loads, expert 3 has
 * its planned replicas only; with one shadow slot per rank and shadows that
 * pay from one row saved, step 5 is balanced by shadows of expert 3, the
 * even steps get none, and each shadow counts 2 x expert_bytes. */
static void test_shadows_on_a_jump(void **state) {
  (void)state;
  enum { n = 8, L = 1, E = 8, G = 4, K = 2 };
  int64_t *src = malloc(sizeof(int64_t) * n * L * G * E);
  for (int t = 0; t < n; t++)
    for (int i = 0; i < G * E; i++) src[(size_t)t * G * E + i] = t == 5 && i % E == 3 ? 400 : 16;
  smoe_whatif_log_t log = {n, L, E, G, K, 64, src, 1024, 1e6, 3e6};
  smoe_whatif_result_t sw = run(&log, "swiftmoe"), sh = run(&log, "swiftmoe:shadow=1,shadow_rows=1");
  print_message("  jump: swiftmoe max %.3f, with shadows %.3f (%.2f shadows per step)\n",
                sw.imb_max, sh.imb_max, sh.shadows);
  assert_true(sw.imb_max > 1.5);             /* the jump step, unshadowed */
  assert_true(sh.imb_max < sw.imb_max - 0.4); /* shadowed */
  assert_true(sh.shadows > 0 && sh.shadows * n <= G); /* on the jump step only, one per rank */
  assert_double_equal(sh.shadow_bytes, sh.shadows * 2 * 1e6, 1e-6);
  assert_double_equal(sw.shadows, 0, 0);
  /* shadows that never pay: none */
  smoe_whatif_result_t dear = run(&log, "swiftmoe:shadow=1,shadow_rows=1e9");
  assert_double_equal(dear.shadows, 0, 0);
  assert_double_equal(dear.imb_max, sw.imb_max, 1e-12);
  free(src);
}

static void test_parse(void **state) {
  smoe_whatif_policy_t p = parse("static");
  assert_int_equal(p.kind, SMOE_WHATIF_STATIC);
  assert_string_equal(p.label, "static");
  p = parse("capacity");
  assert_int_equal(p.kind, SMOE_WHATIF_CAPACITY);
  assert_double_equal(p.factor, 1.0, 0);
  p = parse("capacity:1.25");
  assert_double_equal(p.factor, 1.25, 0);
  assert_string_equal(p.label, "capacity:1.25");
  p = parse("symi");
  assert_int_equal(p.kind, SMOE_WHATIF_SYMI);
  assert_double_equal(p.factor, 1.0, 0);
  assert_double_equal(p.ema, 0, 0);
  assert_double_equal(parse("symi:1.5").factor, 1.5, 0);
  p = parse("swiftmoe");
  assert_int_equal(p.kind, SMOE_WHATIF_SWIFTMOE);
  assert_int_equal(p.S, 0);
  assert_double_equal(p.ema, 0, 0);
  assert_int_equal(parse("swiftmoe:S=6").S, 6);
  assert_int_equal(parse("swiftmoe").shadow, 0);
  assert_int_equal(parse("swiftmoe:shadow=2").shadow, 2);
  assert_double_equal(parse("swiftmoe:shadow=1,shadow_rows=10").shadow_rows, 10, 0);
  assert_double_equal(parse("swiftmoe:ema=0.5").ema, 0.5, 0);
  p = parse("eplb");
  assert_int_equal(p.kind, SMOE_WHATIF_EPLB);
  assert_int_equal(p.every, 100);
  assert_double_equal(p.ema, 0.9, 0);
  assert_int_equal(parse("eplb:100").every, 100);
  p = parse("eplb:every=10,ema=0.8");
  assert_int_equal(p.every, 10);
  assert_double_equal(p.ema, 0.8, 0);
  p = parse("flexmoe");
  assert_int_equal(p.kind, SMOE_WHATIF_FLEXMOE);
  assert_int_equal(p.every, 50);
  assert_double_equal(p.threshold, 1.25, 0);
  assert_int_equal(parse("flexmoe:10").every, 10);
  p = parse("flexmoe:every=10,threshold=1.1");
  assert_int_equal(p.every, 10);
  assert_double_equal(p.threshold, 1.1, 0);

  expect_error("foo",
               "policy \"foo\": expected static, capacity[:F], symi[:F], "
               "swiftmoe[:S=..,ema=..,shadow=..,shadow_rows=..], eplb[:N], flexmoe[:K]");
  expect_error("", "expected static");
  expect_error("eplb:every=0", "policy \"eplb:every=0\": every must be an integer >= 1");
  expect_error("eplb:0", "every must be an integer >= 1");
  expect_error("eplb:1.5", "every must be an integer >= 1");
  expect_error("capacity:0", "factor must be a number > 0");
  expect_error("capacity:x", "factor must be a number > 0");
  expect_error("capacity:1.0x", "factor must be a number > 0");
  expect_error("swiftmoe:ema=1", "ema must be a number in [0, 1)");
  expect_error("swiftmoe:S=0", "S must be an integer >= 1");
  expect_error("swiftmoe:6", "\"6\" is not key=value (swiftmoe takes S, ema, shadow, shadow_rows)");
  expect_error("swiftmoe:foo=1", "unknown key \"foo\" (swiftmoe takes S, ema, shadow, shadow_rows)");
  expect_error("swiftmoe:shadow=-1", "shadow must be an integer >= 0");
  expect_error("swiftmoe:shadow_rows=x", "shadow_rows must be a number >= 0");
  expect_error("eplb:threshold=2", "unknown key \"threshold\" (eplb takes every, ema, S)");
  expect_error("flexmoe:threshold=0.5", "threshold must be a number >= 1");
  expect_error("flexmoe:10,20", "\"20\" is not key=value");
  expect_error("flexmoe:every=10,", "an empty option");
  expect_error("static:1", "static takes no options");
  expect_error("capacity:", "an empty option");
  expect_error("eplb:every=99999999999999999999", "every must be an integer >= 1");
  expect_error("swiftmoe:ema=0.5,S=4,ema=0.5,S=4,ema=0.5,S=4,ema=0.5", "longer than 47");
}

/* Shapes the replay cannot run: a message, not a crash. */
static void test_bad_log(void **state) {
  smoe_whatif_policy_t p = parse("swiftmoe");
  smoe_whatif_result_t r;
  smoe_err_t err = {{0}};
  int64_t src[8] = {1, 2, 3, -4, 5, 6, 7, 8};
  smoe_whatif_log_t log = {1, 1, 4, 2, 1, 10, src, 1, 1, 1};
  assert_int_equal(smoe_whatif_run(&log, &p, &r, &err), -1);
  assert_non_null(strstr(err.msg, "rank 0 routed -4 tokens to expert 3"));
  log.n = 0;
  assert_int_equal(smoe_whatif_run(&log, &p, &r, &err), -1);
  assert_non_null(strstr(err.msg, "n = 0 steps"));
  log.n = 1, log.K = 5;
  assert_int_equal(smoe_whatif_run(&log, &p, &r, &err), -1);
  assert_non_null(strstr(err.msg, "1 <= K <= E"));
  log.K = 1, log.state_bytes = -1;
  assert_int_equal(smoe_whatif_run(&log, &p, &r, &err), -1);
  assert_non_null(strstr(err.msg, "state_bytes -1"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_static_by_hand),
      cmocka_unit_test(test_capacity_by_hand),
      cmocka_unit_test(test_swiftmoe_vs_static),
      cmocka_unit_test(test_flexmoe_one_move),
      cmocka_unit_test(test_moves_and_bytes),
      cmocka_unit_test(test_symi_drops),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_bad_log),
      cmocka_unit_test(test_shadows_on_a_jump),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
