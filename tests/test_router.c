/* test_router: router semantics against numbers computed by hand: softmax
 * over all experts, top-k with ties to the lower index, renormalised gate
 * weights, a selection bias that changes the choice but not the weights,
 * the aux (Switch/HF) and z losses, the dispatch plan and the capacity rule. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "comm.h"
#include "dispatch.h"
#include "moe.h"
#include "placement.h"
#include "policy.h"

static smoe_arena_t scratch; /* the planner's, split's and dispatch's temporary arrays */

#define TOL 1e-6

static void softmax4(const double *x, double *p) {
  double s = 0;
  for (int i = 0; i < 4; i++) s += exp(x[i]);
  for (int i = 0; i < 4; i++) p[i] = exp(x[i]) / s;
}

static void test_topk_renormalise_ties(void **state) {
  /* experts 1 and 3 tie for the top: the lower index comes first */
  const double x[4] = {1.0, 2.0, 0.5, 2.0};
  real probs[4] = {1.0, 2.0, 0.5, 2.0}, lse, gw[2];
  int32_t idx[2];
  smoe_router_forward(probs, &lse, idx, gw, NULL, 1, 4, 2);
  double p[4];
  softmax4(x, p);
  for (int i = 0; i < 4; i++) assert_true(fabs(probs[i] - p[i]) < TOL);
  assert_int_equal(idx[0], 1);
  assert_int_equal(idx[1], 3);
  assert_true(fabs(gw[0] - 0.5) < TOL && fabs(gw[1] - 0.5) < TOL);
  assert_true(fabs(lse - log(exp(1.0) + 2 * exp(2.0) + exp(0.5))) < TOL);
}

static void test_renormalised_weights(void **state) {
  const double x[4] = {0.1, 1.2, -0.3, 0.7};
  real probs[4] = {0.1f, 1.2f, -0.3f, 0.7f}, lse, gw[2];
  int32_t idx[2];
  smoe_router_forward(probs, &lse, idx, gw, NULL, 1, 4, 2);
  double p[4];
  softmax4(x, p);
  assert_int_equal(idx[0], 1);
  assert_int_equal(idx[1], 3);
  assert_true(fabs(gw[0] - p[1] / (p[1] + p[3])) < TOL);
  assert_true(fabs(gw[1] - p[3] / (p[1] + p[3])) < TOL);
}

static void test_bias_changes_selection_not_weights(void **state) {
  const double x[4] = {0.1, 1.2, -0.3, 0.7};
  real probs[4] = {0.1f, 1.2f, -0.3f, 0.7f}, lse, gw[2];
  real bias[4] = {0, 0, 0.9f, 0}; /* lifts expert 2 (p ~ 0.12) above expert 3 */
  int32_t idx[2];
  smoe_router_forward(probs, &lse, idx, gw, bias, 1, 4, 2);
  double p[4];
  softmax4(x, p);
  assert_int_equal(idx[0], 2); /* p2 + 0.9 > p1 */
  assert_int_equal(idx[1], 1);
  /* weights are the unbiased probabilities, renormalised */
  assert_true(fabs(gw[0] - p[2] / (p[1] + p[2])) < TOL);
  assert_true(fabs(gw[1] - p[1] / (p[1] + p[2])) < TOL);
  for (int i = 0; i < 4; i++) assert_true(fabs(probs[i] - p[i]) < TOL);
}

static void test_aux_and_z_loss(void **state) {
  /* two tokens, E = 4, K = 2 */
  real probs[8] = {0.1f, 1.2f, -0.3f, 0.7f, 2.0f, 0.0f, 0.0f, 1.0f}, lse[2], gw[4];
  const double x[2][4] = {{0.1, 1.2, -0.3, 0.7}, {2.0, 0.0, 0.0, 1.0}};
  int32_t idx[4];
  smoe_router_forward(probs, lse, idx, gw, NULL, 2, 4, 2);
  /* token 0 picks (1, 3); token 1 picks (0, 3) */
  assert_int_equal(idx[0], 1), assert_int_equal(idx[1], 3);
  assert_int_equal(idx[2], 0), assert_int_equal(idx[3], 3);
  int64_t counts[8];
  double psum[4], zsum;
  smoe_router_stats(counts, psum, &zsum, probs, lse, idx, 2, 4, 2);
  double p0[4], p1[4];
  softmax4(x[0], p0), softmax4(x[1], p1);
  /* f[k=0] = (0.5 at e0, 0.5 at e1); f[k=1] = (1.0 at e3); P = mean probs */
  double P[4];
  for (int e = 0; e < 4; e++) P[e] = (p0[e] + p1[e]) / 2;
  double aux = 4 * (0.5 * P[0] + 0.5 * P[1] + 1.0 * P[3]);
  assert_true(fabs(smoe_router_aux_loss(counts, psum, 2, 4, 2) - aux) < TOL);
  double l0 = log(exp(0.1) + exp(1.2) + exp(-0.3) + exp(0.7));
  double l1 = log(exp(2.0) + 2 * exp(0.0) + exp(1.0));
  assert_true(fabs(zsum / 2 - (l0 * l0 + l1 * l1) / 2) < 1e-5);
  /* perfectly uniform routing gives aux = K (the balanced optimum) */
  int64_t uc[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  double up[4] = {1, 1, 1, 1};
  assert_true(fabs(smoe_router_aux_loss(uc, up, 4, 4, 2) - 2.0) < TOL);
}

static void test_dispatch_plan(void **state) {
  /* world of one, 3 experts in 3 slots: send order = expert order, stable */
  int32_t idx[6] = {2, 0, 0, 2, 1, 2}; /* 3 tokens, K = 2 */
  int expert_slot[3] = {0, 1, 2}, pos[6];
  smoe_comm_t *c = smoe_comm_local();
  smoe_dispatch_t d;
  smoe_dispatch_init(&d, &smoe_ops_cpu, 1, 3, 0, 6, 6);
  smoe_dispatch_plan(&d, c, pos, idx, NULL, expert_slot, 3, 6, &scratch);
  assert_int_equal(d.slot_offsets[1], 2), assert_int_equal(d.slot_offsets[2], 3);
  assert_int_equal(d.slot_offsets[3], 6);
  assert_int_equal(d.rows_send, 6), assert_int_equal(d.rows_recv, 6);
  /* expert 0 rows 0-1 (tokens 0, 1), expert 1 row 2 (token 2), expert 2 rows 3-5 */
  int want[6] = {3, 0, 1, 4, 2, 5};
  for (int i = 0; i < 6; i++) assert_int_equal(pos[i], want[i]);
  /* a dropped assignment gets no row */
  uint8_t keep[6] = {1, 1, 0, 1, 1, 1};
  smoe_dispatch_plan(&d, c, pos, idx, keep, expert_slot, 3, 6, &scratch);
  int want2[6] = {2, 0, -1, 3, 1, 4};
  for (int i = 0; i < 6; i++) assert_int_equal(pos[i], want2[i]);
  assert_int_equal(d.rows_recv, 5);
  smoe_dispatch_free(&d);
  smoe_comm_finalize(c);
}

static void test_capacity_keep(void **state) {
  /* 4 tokens, K = 2, E = 2, capacity 3: first choices first, in token order */
  int32_t idx[8] = {0, 1, 0, 1, 0, 1, 1, 0};
  real gw[8] = {0.6f, 0.4f, 0.9f, 0.1f, 0.7f, 0.3f, 0.8f, 0.2f};
  uint8_t keep[8];
  int64_t caps[2] = {3, 3};
  /* expert 0 gets first choices of tokens 0, 1, 2 (full), then token 3's second choice: dropped.
   * expert 1 gets token 3's first choice, then second choices of tokens 0, 1 (full), 2 dropped */
  assert_int_equal(smoe_capacity_keep(keep, idx, gw, 4, 2, 2, caps, 0, &scratch), 2);
  uint8_t want[8] = {1, 1, 1, 1, 1, 0, 1, 0};
  for (int i = 0; i < 8; i++) assert_int_equal(keep[i], want[i]);
  /* by weight: expert 1's candidates 0.4, 0.1, 0.3, 0.8 keep the top 3: drop 0.1 */
  assert_int_equal(smoe_capacity_keep(keep, idx, gw, 4, 2, 2, caps, 1, &scratch), 2);
  uint8_t want_w[8] = {1, 1, 1, 0, 1, 1, 1, 0};
  for (int i = 0; i < 8; i++) assert_int_equal(keep[i], want_w[i]);
  /* capacity = max(min_capacity, ceil(factor K T / E)) */
  assert_int_equal(smoe_capacity(1.0, 4, 2, 10, 8), 4);
  assert_int_equal(smoe_capacity(1.25, 4, 2, 100, 8), 32);
}

/* The policies' drop rules as quotas (policy.h), by hand. */
static void test_drop_quotas(void **state) {
  (void)state;
  int64_t allowed[6];
  /* capacity: 3 tokens, K = 2, E = 3: cap max(1, ceil(1.0 x 2 x 3 / 3)) = 2 */
  smoe_drops_t cap = smoe_policy_drops(SMOE_POLICY_CAPACITY, 1.0, 1, "weight");
  assert_int_equal(cap.kind, SMOE_DROPS_CAPACITY);
  assert_int_equal(cap.by_weight, 1);
  int64_t mine[3] = {5, 1, 0};
  assert_int_equal(smoe_drops_quota(&cap, mine, 1, 3, 2, 3, NULL, 2, 2, allowed), 3);
  assert_int_equal(allowed[0], 2), assert_int_equal(allowed[1], 1), assert_int_equal(allowed[2], 0);
  /* swiftmoe drops nothing */
  smoe_drops_t none = smoe_policy_drops(SMOE_POLICY_SWIFTMOE, 1.0, 1, "position");
  assert_int_equal(smoe_drops_quota(&none, mine, 1, 3, 2, 3, NULL, 2, 2, allowed), 0);
  assert_int_equal(allowed[0], 5);
  /* symi: G = 2, S = 2, 8 tokens, K = 2: per slot ceil(2 x 8 / 4) = 4; replicas 2, 1, 1 keep
   * 8, 4, 4. Expert 0: 6 + 4 = 10 -> floor(4.8) = 4, floor(3.2) = 3, the 8th to rank 0;
   * expert 1: 3 + 2 = 5 -> 2, 1, the 4th to rank 0; expert 2: 1 fits */
  smoe_drops_t symi = smoe_policy_drops(SMOE_POLICY_SYMI, 1.0, 1, "position");
  int64_t src[6] = {6, 3, 1, 4, 2, 0};
  int replicas[3] = {2, 1, 1};
  assert_int_equal(smoe_drops_quota(&symi, src, 2, 3, 2, 8, replicas, 2, 2, allowed), 3);
  int64_t want[6] = {5, 3, 1, 3, 1, 0};
  for (int i = 0; i < 6; i++) assert_int_equal(allowed[i], want[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_drop_quotas),
      cmocka_unit_test(test_topk_renormalise_ties),
      cmocka_unit_test(test_renormalised_weights),
      cmocka_unit_test(test_bias_changes_selection_not_weights),
      cmocka_unit_test(test_aux_and_z_loss),
      cmocka_unit_test(test_dispatch_plan),
      cmocka_unit_test(test_capacity_keep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
