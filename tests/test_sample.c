/* test_sample: decoding with a KV cache (engine/sample.c).
 *  - at every position, the logits of one token at a time with the cache
 *    equal those of a full forward over the whole sequence (float
 *    tolerance), with the router's selection bias set (training's routing);
 *  - the choice: temperature 0 is the argmax (ties to the lower id); top-k 1
 *    is the argmax too; the same seed gives the same draws, another seed
 *    other draws; draws follow softmax(logits / T) over the top k. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "model.h"
#include "sample.h"

static void test_cache_equals_full_forward(void **state) {
  (void)state;
  smoe_config_t c;
  smoe_config_defaults(&c);
  c.dim = 32, c.n_layers = 3, c.n_heads = 4, c.n_kv_heads = 2, c.seq_len = 24;
  c.num_experts = 6, c.top_k = 2, c.expert_dim = 48, c.init_std = 0.3; /* routing matters */
  smoe_model_t m;
  smoe_model_init(&m, &c, 1);
  for (int i = 0; i < c.n_layers * c.num_experts; i++) /* a selection bias, as training's */
    m.expert_bias[i] = (real)(0.05 * ((i * 7) % 5 - 2));
  const int T = c.seq_len, V = c.vocab_size;
  int32_t tokens[25];
  for (int t = 0; t <= T; t++) tokens[t] = (int32_t)((t * 37 + 11) % V);
  real *full = malloc(sizeof(real) * (size_t)T * V);
  m.ops->to_device(m.bias_dev, m.expert_bias, sizeof(real) * c.n_layers * c.num_experts);
  smoe_model_logits(&m, tokens, 1, full);
  smoe_decoder_t d;
  smoe_err_t err;
  assert_int_equal(smoe_decoder_init(&d, &m, &err), 0);
  double worst = 0, scale = 0;
  for (int t = 0; t < T; t++) {
    const real *lg = smoe_decoder_step(&d, tokens[t]);
    for (int v = 0; v < V; v++) {
      double diff = fabs((double)lg[v] - (double)full[(size_t)t * V + v]);
      if (diff > worst) worst = diff;
      if (fabs((double)full[(size_t)t * V + v]) > scale) scale = fabs((double)full[(size_t)t * V + v]);
    }
  }
  print_message("max |cached - full| = %.3g over %d positions (logits up to %.3g)\n", worst, T, scale);
  assert_true(scale > 0.5); /* the model says something */
  assert_true(worst <= (sizeof(real) == 4 ? 2e-5 : 1e-12) * (1 + scale));
  /* a reset starts a new sequence: the first position again */
  smoe_decoder_reset(&d);
  const real *lg = smoe_decoder_step(&d, tokens[0]);
  for (int v = 0; v < V; v++) assert_true(fabs((double)lg[v] - (double)full[v]) <= 2e-5 * (1 + scale));
  smoe_decoder_free(&d);
  smoe_model_free(&m);
  free(full);
}

static void test_pick(void **state) {
  (void)state;
  enum { V = 8 };
  real logits[V] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f, -3.0f, 1.5f};
  int32_t order[V];
  uint64_t rng = 42;
  assert_int_equal(smoe_sample_pick(logits, V, 0, 0, &rng, order), 1); /* tie 1 vs 3: lower */
  assert_int_equal(rng, 42);                                            /* greedy draws nothing */
  for (int i = 0; i < 20; i++) assert_int_equal(smoe_sample_pick(logits, V, 1.0, 1, &rng, order), 1);
  /* the same seed, the same draws; another seed, others */
  int32_t a[64], b[64], o[64];
  uint64_t ra = 7, rb = 7, ro = 8;
  int same_other = 0;
  for (int i = 0; i < 64; i++) {
    a[i] = smoe_sample_pick(logits, V, 1.0, 0, &ra, order);
    b[i] = smoe_sample_pick(logits, V, 1.0, 0, &rb, order);
    o[i] = smoe_sample_pick(logits, V, 1.0, 0, &ro, order);
    same_other += a[i] == o[i];
  }
  assert_memory_equal(a, b, sizeof a);
  assert_true(same_other < 64);
  /* frequencies follow softmax(logits / 0.7) over the top 3 (ids 1, 3, 7) */
  int count[V] = {0};
  const int n = 200000;
  for (int i = 0; i < n; i++) count[smoe_sample_pick(logits, V, 0.7, 3, &rng, order)]++;
  double z = exp(2.0 / 0.7) * 2 + exp(1.5 / 0.7);
  for (int v = 0; v < V; v++) {
    double want = v == 1 || v == 3 ? exp(2.0 / 0.7) / z : v == 7 ? exp(1.5 / 0.7) / z : 0;
    double got = (double)count[v] / n;
    print_message("id %d: drawn %.4f, softmax %.4f\n", v, got, want);
    assert_true(fabs(got - want) < 0.005);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cache_equals_full_forward),
      cmocka_unit_test(test_pick),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
