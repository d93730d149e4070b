/* test_cost: the cluster cost model (cost.h) and whatif's fluid replay
 * against hand computations: a ring all-gather, an all-to-all with one hot
 * destination, a skewed rank's compute; monotonicity (more bandwidth or
 * FLOP/s is never slower; more skew is never faster for static); steps to
 * target on a hand-made curve; the fluid replay against the exact one on
 * loads where they must agree; the synthetic loads; the calibration's JSON. */
/* cmocka.h needs these first */
// clang-format off
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
// clang-format on

#include "cost.h"
#include "split.h"
#include "whatif.h"

#define assert_close(a, b, rel) check_close((a), (b), (rel), #a, __FILE__, __LINE__)
static void check_close(double a, double b, double rel, const char *what, const char *file,
                        int line) {
  if (!(fabs(a - b) <= rel * fabs(b) + 1e-15))
    fail_msg("%s:%d: %s = %.17g, expected %.17g", file, line, what, a, b);
}

static smoe_scenario_t scenario(const char *name) {
  smoe_scenario_t sc;
  smoe_err_t err;
  if (smoe_scenario_find(name, &sc, &err) != 0) fail_msg("%s", err.msg);
  return sc;
}

static void test_ring_by_hand(void **state) {
  (void)state;
  smoe_scenario_t sc = scenario("h200x8"); /* 8 GPUs, one node: NVLink */
  sc.in_bw = 100e9, sc.in_alpha = 1e-6;
  /* (G-1)/G b / B + (G-1) a = 7/8 x 800e6 / 100e9 + 7e-6 */
  assert_close(smoe_cost_ring(&sc, 800e6), 0.007 + 7e-6, 1e-12);
  smoe_scenario_resize(&sc, 16); /* two nodes: the ring crosses the network */
  sc.out_bw = 50e9, sc.out_alpha = 5e-6;
  assert_close(smoe_cost_ring(&sc, 800e6), 15.0 / 16 * 800e6 / 50e9 + 15 * 5e-6, 1e-12);
  smoe_scenario_resize(&sc, 1);
  assert_true(smoe_cost_ring(&sc, 800e6) == 0);
}

/* The fluid replay's one step, kept for the test. */
typedef struct {
  const int64_t *counts; /* (L, E) the same every step */
  int L, E;
  smoe_cost_step_t st;
  int64_t rows[64], send[64], recv[64];
  int slot_expert[64], replicas[64];
  int64_t incoming[64];
  int seen;
} one_t;

static void counts_fixed(void *ctx, int64_t t, int64_t *out) {
  (void)t;
  one_t *o = ctx;
  memcpy(out, o->counts, sizeof(int64_t) * (size_t)o->L * o->E);
}

static void keep_step(void *ctx, const smoe_cost_step_t *st) {
  one_t *o = ctx;
  o->st = *st;
  memcpy(o->rows, st->rows, sizeof(int64_t) * (size_t)st->L * st->G);
  memcpy(o->send, st->send, sizeof(int64_t) * (size_t)st->L * st->G);
  memcpy(o->recv, st->recv, sizeof(int64_t) * (size_t)st->L * st->G);
  memcpy(o->slot_expert, st->slot_expert, sizeof(int) * (size_t)st->L * st->G * st->S);
  memcpy(o->replicas, st->replicas, sizeof(int) * (size_t)st->L * st->E);
  o->st.rows = o->rows, o->st.send = o->send, o->st.recv = o->recv;
  memcpy(o->incoming, st->incoming, sizeof(int64_t) * (size_t)st->G);
  o->st.slot_expert = o->slot_expert, o->st.replicas = o->replicas, o->st.incoming = o->incoming;
  o->seen++;
}

static smoe_whatif_result_t fluid(one_t *o, const char *spec, int n, int G, int K, int64_t N) {
  smoe_whatif_policy_t p;
  smoe_whatif_result_t r;
  smoe_err_t err;
  if (smoe_whatif_parse(spec, &p, &err) != 0) fail_msg("%s", err.msg);
  const smoe_whatif_fluid_t f = {n, o->L, o->E, G, K, N, counts_fixed, keep_step, o, 1, 1, 1};
  if (smoe_whatif_fluid(&f, &p, &r, &err) != 0) fail_msg("%s: %s", spec, err.msg);
  assert_int_equal(o->seen, n);
  return r;
}

/* static on 4 GPUs, one expert each, 700 of 1000 rows to expert 3: GPU 3
 * computes 700 rows, 525 of them from the other three (each source routes
 * a quarter); its all-to-all moves 525 rows, and it decides the step */
static void test_hot_destination_by_hand(void **state) {
  (void)state;
  const int64_t counts[4] = {100, 100, 100, 700};
  one_t o = {counts, 1, 4, {0}, {0}, {0}, {0}, {0}, {0}, {0}, 0};
  smoe_whatif_result_t r = fluid(&o, "static", 1, 4, 1, 250);
  const int64_t rows[4] = {100, 100, 100, 700}, recv[4] = {75, 75, 75, 525},
                send[4] = {225, 225, 225, 75};
  for (int g = 0; g < 4; g++) {
    assert_int_equal(o.rows[g], rows[g]);
    assert_int_equal(o.recv[g], recv[g]);
    assert_int_equal(o.send[g], send[g]);
  }
  assert_close(r.imb_mean, 700.0 / 250, 1e-12);
  smoe_scenario_t sc = scenario("paper-a100x16");
  smoe_scenario_resize(&sc, 4);
  sc.L = 1, sc.E = 4;
  smoe_cost_parts_t c;
  smoe_cost_step(&sc, SMOE_SYNC_LOCAL, &o.st, &c);
  const double f_row = 2.0 * sc.mats * sc.D * sc.F;
  assert_close(c.expert, 700 * 3 * f_row / sc.flops, 1e-12); /* the skewed rank's compute */
  /* one node per GPU: every remote row crosses the network, one message per peer */
  assert_close(c.a2a, 4 * (525.0 * sc.D * sc.elem / sc.out_bw + 3 * sc.out_alpha), 1e-12);
  assert_true(c.expert_sync == 0 && c.migration == 0);
  assert_close(c.total, c.expert + c.a2a + c.dense + c.dense_comm + c.optimizer + c.ckpt, 1e-12);
  /* FasterMoE: 3 comp B_max + 4 send B_max, no model sends for static */
  assert_close(c.fastermoe,
               700 * (3 * f_row / sc.flops + 4 * sc.D * sc.elem / sc.out_bw), 1e-12);
  /* swiftmoe on the same loads: no rank above the mean's ceiling */
  one_t q = {counts, 1, 4, {0}, {0}, {0}, {0}, {0}, {0}, {0}, 0};
  fluid(&q, "swiftmoe:S=2", 2, 4, 1, 250);
  for (int g = 0; g < 4; g++) assert_true(q.rows[g] <= 250);
}

/* A policy's mean modelled step on synthetic loads under sc. */
typedef struct {
  const smoe_scenario_t *sc;
  smoe_cost_sync_t sync;
  const int64_t *counts;
  size_t LE;
  double total;
} mean_t;

static void counts_at(void *x, int64_t t, int64_t *out) {
  mean_t *m = x;
  memcpy(out, m->counts + (size_t)t * m->LE, sizeof(int64_t) * m->LE);
}

static void cost_of(void *x, const smoe_cost_step_t *st) {
  mean_t *m = x;
  smoe_cost_parts_t c;
  smoe_cost_step(m->sc, m->sync, st, &c);
  m->total += c.total;
}

static double mean_step(const smoe_scenario_t *sc, const char *spec, double zipf, double drift) {
  const int n = 40;
  const size_t LE = (size_t)sc->L * sc->E;
  int64_t *counts = malloc(sizeof(int64_t) * n * LE);
  smoe_synth_t y;
  smoe_synth_init(&y, zipf, drift, sc->L, sc->E, 7);
  for (int t = 0; t < n; t++)
    smoe_synth_next(&y, (int64_t)sc->G * smoe_cost_tokens(sc) * sc->K, counts + t * LE);
  smoe_synth_free(&y);
  smoe_whatif_policy_t p;
  smoe_err_t err;
  if (smoe_whatif_parse(spec, &p, &err) != 0) fail_msg("%s", err.msg);
  mean_t m = {sc,
              p.kind <= SMOE_WHATIF_CAPACITY ? SMOE_SYNC_LOCAL
              : p.kind >= SMOE_WHATIF_EPLB   ? SMOE_SYNC_REPLICATED
                                             : SMOE_SYNC_SHARDED,
              counts, LE, 0};
  const smoe_whatif_fluid_t f = {n, sc->L, sc->E, sc->G, sc->K, smoe_cost_tokens(sc), counts_at,
                                 cost_of, &m, sc->D * sc->elem, 1, 1};
  smoe_whatif_result_t r;
  if (smoe_whatif_fluid(&f, &p, &r, &err) != 0) fail_msg("%s: %s", spec, err.msg);
  free(counts);
  return m.total / n;
}

static const char *POLICIES[] = {"static", "capacity:1.0", "symi:1.0", "swiftmoe:S=4",
                                 "eplb:10", "flexmoe:10"};

/* more bandwidth, more FLOP/s, lower latency: never slower, every policy */
static void test_faster_hardware_is_never_slower(void **state) {
  (void)state;
  smoe_scenario_t base = scenario("paper-a100x16");
  base.L = 2;
  for (size_t k = 0; k < sizeof POLICIES / sizeof *POLICIES; k++) {
    const double t0 = mean_step(&base, POLICIES[k], 1.0, 0.1);
    smoe_scenario_t x = base;
    x.out_bw *= 2;
    const double t_net = mean_step(&x, POLICIES[k], 1.0, 0.1);
    x = base, x.flops *= 2;
    const double t_flops = mean_step(&x, POLICIES[k], 1.0, 0.1);
    x = base, x.pcie_bw *= 2, x.host_bw *= 2, x.hbm_bw *= 2, x.disk_bw *= 2;
    const double t_mem = mean_step(&x, POLICIES[k], 1.0, 0.1);
    x = base, x.out_alpha /= 2, x.in_alpha /= 2;
    const double t_lat = mean_step(&x, POLICIES[k], 1.0, 0.1);
    print_message("%-14s %.4f s; 2x network %.4f, 2x FLOP/s %.4f, 2x memory paths %.4f, "
                  "half latency %.4f\n",
                  POLICIES[k], t0, t_net, t_flops, t_mem, t_lat);
    assert_true(t_net < t0 && t_flops < t0 && t_mem < t0 && t_lat < t0);
  }
}

/* static on Zipf(s) loads: the busiest GPU's rows grow with s */
static void test_more_skew_is_never_faster_for_static(void **state) {
  (void)state;
  smoe_scenario_t sc = scenario("paper-a100x16");
  sc.L = 4;
  double prev = 0;
  for (double s = 0; s <= 2.0; s += 0.25) {
    const double t = mean_step(&sc, "static", s, 0.0);
    print_message("zipf %.2f: static %.4f s per step\n", s, t);
    assert_true(t >= prev);
    prev = t;
  }
  assert_true(mean_step(&sc, "swiftmoe", 2.0, 0.0) < prev); /* and replicas help */
}

static void test_steps_to_target_by_hand(void **state) {
  (void)state;
  const int64_t steps[5] = {0, 100, 200, 300, 400};
  const double loss[5] = {5.0, 3.0, 2.0, 2.2, 1.5};
  assert_close(smoe_steps_to_target(steps, loss, 5, 2.5), 150, 1e-12); /* 3 -> 2 halfway */
  assert_close(smoe_steps_to_target(steps, loss, 5, 2.0), 200, 1e-12);
  assert_close(smoe_steps_to_target(steps, loss, 5, 5.0), 0, 1e-12);
  /* 2.2 -> 1.5 between 300 and 400: 0.45 of the 0.7 */
  assert_close(smoe_steps_to_target(steps, loss, 5, 1.75), 300 + 100 * 0.45 / 0.7, 1e-12);
  assert_true(smoe_steps_to_target(steps, loss, 5, 1.0) == -1);         /* never */
  assert_true(smoe_steps_to_target(steps, loss, 0, 1.0) == -1);
}

/* On loads where every source routes exactly T_e / G, the fluid replay is
 * the exact one: the same imbalance and drops for static and capacity. */
static void test_fluid_matches_exact_on_even_sources(void **state) {
  (void)state;
  enum { n = 6, L = 2, E = 8, G = 4, K = 2 };
  static int64_t src[n * L * G * E];
  const int64_t N = 64;
  for (int t = 0; t < n; t++)
    for (int l = 0; l < L; l++)
      for (int e = 0; e < E; e++) {
        const int64_t per = (e == (t + l) % E ? 5 : 1) * 4 + (e % 3); /* N K = 128 per source */
        for (int q = 0; q < G; q++) src[(((size_t)t * L + l) * G + q) * E + e] = per;
      }
  const smoe_whatif_log_t log = {n, L, E, G, K, N, src, 1, 1, 1};
  const char *specs[] = {"static", "capacity:1.0", "capacity:0.5"};
  for (int k = 0; k < 3; k++) {
    smoe_whatif_policy_t p;
    smoe_whatif_result_t a, b;
    smoe_err_t err;
    smoe_whatif_parse(specs[k], &p, &err);
    if (smoe_whatif_run(&log, &p, &a, &err) != 0) fail_msg("%s", err.msg);
    static int64_t totals[n * L * E];
    for (int t = 0; t < n; t++)
      for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
          int64_t s = 0;
          for (int q = 0; q < G; q++) s += src[(((size_t)t * L + l) * G + q) * E + e];
          totals[((size_t)t * L + l) * E + e] = s;
        }
    mean_t m = {NULL, SMOE_SYNC_LOCAL, totals, (size_t)L * E, 0};
    const smoe_whatif_fluid_t f = {n, L, E, G, K, N, counts_at, NULL, &m, 1, 1, 1};
    if (smoe_whatif_fluid(&f, &p, &b, &err) != 0) fail_msg("%s", err.msg);
    print_message("%s: imbalance %.6f / %.6f, dropped %.6f / %.6f\n", specs[k], a.imb_mean,
                  b.imb_mean, a.dropped_frac, b.dropped_frac);
    assert_close(b.imb_mean, a.imb_mean, 1e-12);
    assert_close(b.dropped_frac, a.dropped_frac, 1e-12);
    assert_close(b.dispatch_bytes, a.dispatch_bytes, 1e-12);
  }
}

/* smoe_split_slot_rows: the load-aware split's least cap from the totals
 * alone (smoe_split's busiest rank on even sources), the even split's shares */
static void test_slot_rows(void **state) {
  (void)state;
  enum { E = 4, G = 4, S = 2 };
  const int se[G * S] = {0, 1, 0, 2, 0, 3, 1, 2}; /* expert 0 on ranks 0, 1, 2 */
  const int64_t T[E] = {300, 40, 40, 20};
  int64_t counts[G * E], take[G * G * S], load[G], rows[G * S];
  for (int q = 0; q < G; q++)
    for (int e = 0; e < E; e++) counts[q * E + e] = T[e] / G;
  smoe_arena_t a = {0};
  smoe_split(counts, se, E, G, S, take, &a);
  smoe_split_rank_load(take, G, S, load);
  smoe_split_slot_rows(T, se, E, G, S, 0, rows, &a);
  int64_t most = 0, most_fluid = 0, sum = 0;
  for (int g = 0; g < G; g++) {
    most = load[g] > most ? load[g] : most;
    int64_t r = 0;
    for (int s = 0; s < S; s++) r += rows[g * S + s];
    most_fluid = r > most_fluid ? r : most_fluid;
    sum += r;
  }
  assert_int_equal(sum, 400);
  assert_int_equal(most_fluid, most);
  /* rank 3 holds experts 1 and 2 only (80 rows): ranks 0-2 share the other
   * 320, ceil(320 / 3) = 107 */
  assert_int_equal(most, 107);
  smoe_split_slot_rows(T, se, E, G, S, 1, rows, &a); /* even: 100 per replica of expert 0 */
  assert_int_equal(rows[0], 100), assert_int_equal(rows[2], 100), assert_int_equal(rows[4], 100);
  assert_int_equal(rows[1] + rows[6], 40);
  smoe_arena_free(&a);
}

static void test_synthetic_loads(void **state) {
  (void)state;
  smoe_synth_t y;
  enum { L = 3, E = 16 };
  int64_t a[L * E], b[L * E];
  smoe_synth_init(&y, 1.2, 0.0, L, E, 11);
  smoe_synth_next(&y, 100003, a);
  smoe_synth_next(&y, 100003, b);
  for (int l = 0; l < L; l++) {
    int64_t s = 0, top = 0;
    for (int e = 0; e < E; e++) s += a[l * E + e], top = a[l * E + e] > top ? a[l * E + e] : top;
    assert_int_equal(s, 100003);
    assert_true(top > 100003 / 4); /* Zipf 1.2 over 16: the first rank holds about 30% */
  }
  assert_memory_equal(a, b, sizeof a); /* no drift: the same loads */
  smoe_synth_free(&y);
  smoe_synth_init(&y, 1.2, 1.0, L, E, 11);
  smoe_synth_next(&y, 100003, a);
  smoe_synth_next(&y, 100003, b);
  assert_true(memcmp(a, b, sizeof a) != 0); /* every rank swapped */
  smoe_synth_free(&y);
  smoe_synth_init(&y, 0.0, 0.0, 1, E, 3); /* Zipf 0: even, the remainder to the first */
  smoe_synth_next(&y, 100, a);
  for (int e = 0; e < E; e++) assert_true(a[e] == 6 || a[e] == 7);
  smoe_synth_free(&y);
  double s, d;
  smoe_err_t err;
  assert_int_equal(smoe_synth_parse("zipf:1.5,drift:0.2", &s, &d, &err), 0);
  assert_true(s == 1.5 && d == 0.2);
  assert_int_equal(smoe_synth_parse("zipf:x", &s, &d, &err), -1);
  assert_non_null(strstr(err.msg, "zipf:S,drift:D"));
  assert_int_equal(smoe_synth_parse("drift:2", &s, &d, &err), -1);
}

static void test_scenarios_and_calibration(void **state) {
  (void)state;
  smoe_scenario_t sc;
  smoe_err_t err;
  assert_int_equal(smoe_scenario_find("a100x99", &sc, &err), -1);
  assert_non_null(strstr(err.msg, "paper-a100x16"));
  const smoe_scenario_t *list;
  int n = smoe_scenarios(&list);
  assert_true(n >= 4);
  for (int i = 0; i < n; i++) {
    /* the per-GPU batch divides: N = batch seq / G whole */
    assert_int_equal(list[i].batch * list[i].seq % list[i].G, 0);
    assert_true(list[i].E % list[i].G == 0 || list[i].G % list[i].E == 0);
  }
  sc = scenario("h200x256");
  smoe_scenario_resize(&sc, 1024);
  assert_int_equal(sc.G, 1024);
  assert_int_equal(sc.E, 1024); /* each GPU an expert */
  assert_int_equal(smoe_cost_tokens(&sc), smoe_cost_tokens(&list[2]));
  sc = scenario("paper-a100x16"); /* 4 slots on 2 GPUs cannot hold 16 experts */
  smoe_scenario_resize(&sc, 2);
  assert_int_equal(sc.S, 0);
  assert_int_equal(sc.E, 16);
  assert_int_equal(sc.batch, 8); /* 4 sequences per GPU, as on 16 */
  char said[512];
  sc = scenario("h200x8");
  const char *good = "{\"ceilings\": {\"bf16_gemm_tflops\": 700, \"copy_gbps\": 4000, "
                     "\"d2h_pinned_gbps\": 50}, \"bench_h200\": {\"fraction_of_bf16_R\": 0.5}}";
  assert_int_equal(smoe_scenario_calibrate(&sc, good, "cal.json", said, sizeof said, &err), 0);
  assert_close(sc.flops, 350e12, 1e-12);
  assert_close(sc.hbm_bw, 4000e9, 1e-12);
  assert_close(sc.pcie_bw, 50e9, 1e-12);
  assert_non_null(strstr(said, "measured"));
  assert_int_equal(smoe_scenario_calibrate(&sc, "{\"ceilings\": {\"bf16_gemm_tflops\": 700}}",
                                           "cal.json", said, sizeof said, &err),
                   -1);
  assert_non_null(strstr(err.msg, "cal.json: needs"));
  assert_non_null(strstr(err.msg, "copy_gbps"));
  assert_int_equal(smoe_scenario_calibrate(&sc, "not json", "cal.json", said, sizeof said, &err),
                   -1);
  assert_non_null(strstr(err.msg, "not JSON"));
}

/* a shadowed swiftmoe needs per-source counts: refused by name */
static void test_fluid_refuses_shadows(void **state) {
  (void)state;
  const int64_t counts[4] = {1, 2, 3, 4};
  mean_t m = {NULL, SMOE_SYNC_SHARDED, counts, 4, 0};
  smoe_whatif_policy_t p;
  smoe_whatif_result_t r;
  smoe_err_t err;
  smoe_whatif_parse("swiftmoe:shadow=1", &p, &err);
  const smoe_whatif_fluid_t f = {1, 1, 4, 2, 1, 5, counts_at, NULL, &m, 1, 1, 1};
  assert_int_equal(smoe_whatif_fluid(&f, &p, &r, &err), -1);
  assert_non_null(strstr(err.msg, "shadow"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ring_by_hand),
      cmocka_unit_test(test_hot_destination_by_hand),
      cmocka_unit_test(test_faster_hardware_is_never_slower),
      cmocka_unit_test(test_more_skew_is_never_faster_for_static),
      cmocka_unit_test(test_steps_to_target_by_hand),
      cmocka_unit_test(test_fluid_matches_exact_on_even_sources),
      cmocka_unit_test(test_slot_rows),
      cmocka_unit_test(test_synthetic_loads),
      cmocka_unit_test(test_scenarios_and_calibration),
      cmocka_unit_test(test_fluid_refuses_shadows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
