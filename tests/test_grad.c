/* test_grad: every op's backward against central finite differences, in the
 * double build (smoe_f64), then the whole model's gradient on sampled
 * entries of every tensor. Tolerance: |num - ana| <= 1e-5 (|num| + |ana| +
 * 1e-3): central differences with h = 1e-6 have truncation error ~h^2 and
 * rounding ~1e-16/h = 1e-10 absolute; a wrong formula is off by O(1). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "data.h"
#include "model.h"
#include "moe.h"
#include "ops.h"

static smoe_arena_t scratch; /* the ops' temporary arrays (kept to the end) */
static uint64_t rng_state = 42;
static double urand(void) { /* uniform in [-1, 1) */
  rng_state = smoe_mix64(rng_state + 0x9e3779b97f4a7c15ull);
  return (double)(rng_state >> 11) * 0x1.0p-52 - 1.0;
}
static real *rand_vec(size_t n, double scale) {
  real *x = xmalloc(sizeof(real) * n);
  for (size_t i = 0; i < n; i++) x[i] = (real)(scale * urand());
  return x;
}
static double dotv(const real *a, const real *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* The loss of a check: a scalar function of the current inputs. */
typedef double (*loss_fn)(void *ctx);

/* Compares analytic grad (n) of x against central differences of f. */
static void check(const char *what, real *x, const real *grad, size_t n, loss_fn f, void *ctx) {
  const double h = 1e-6;
  size_t stride = n > 64 ? n / 64 : 1;
  double worst = 0;
  for (size_t i = 0; i < n; i += stride) {
    real keep = x[i];
    x[i] = keep + h;
    double lp = f(ctx);
    x[i] = keep - h;
    double lm = f(ctx);
    x[i] = keep;
    double num = (lp - lm) / (2 * h), ana = grad[i];
    /* relative, with an absolute floor for the rounding of tiny gradients
     * (loss ~1 in double: ~1e-16 / h = 1e-10 absolute) */
    double rel = fabs(num - ana) / (fabs(num) + fabs(ana) + 1e-3);
    if (rel > worst) worst = rel;
    if (rel > 1e-5) fail_msg("%s[%zu]: analytic %.10g, numeric %.10g (rel %.2e)", what, i, ana, num, rel);
  }
  print_message("  %-28s worst rel err %.2e\n", what, worst);
}

/* ---------------------------------------------------------------- ops */

typedef struct {
  int N, C, OC, B, T, H, Hkv, d, E, K, F, V;
  real *x, *w, *out, *r, *aux1, *aux2, *aux3;
  int32_t *idx;
  int *pos, *offsets;
} ctx_t;

static double matmul_loss(void *p) {
  ctx_t *c = p;
  smoe_matmul_forward(c->out, c->x, c->w, c->N, c->C, c->OC);
  return dotv(c->r, c->out, (size_t)c->N * c->OC);
}

static void test_matmul(void **state) {
  ctx_t c = {.N = 7, .C = 5, .OC = 6};
  c.x = rand_vec(35, 1), c.w = rand_vec(30, 1), c.out = rand_vec(42, 1), c.r = rand_vec(42, 1);
  real *dx = xcalloc(35, sizeof(real)), *dw = xcalloc(30, sizeof(real));
  smoe_matmul_backward(dx, dw, c.r, c.x, c.w, c.N, c.C, c.OC);
  check("matmul dinp", c.x, dx, 35, matmul_loss, &c);
  check("matmul dw", c.w, dw, 30, matmul_loss, &c);
  free(c.x), free(c.w), free(c.out), free(c.r), free(dx), free(dw);
}

static double rmsnorm_loss(void *p) {
  ctx_t *c = p;
  smoe_rmsnorm_forward(c->out, c->aux1, c->x, c->w, c->N, c->C, 1e-5);
  return dotv(c->r, c->out, (size_t)c->N * c->C);
}

static void test_rmsnorm(void **state) {
  ctx_t c = {.N = 6, .C = 8};
  c.x = rand_vec(48, 2), c.w = rand_vec(8, 1), c.out = rand_vec(48, 1), c.r = rand_vec(48, 1);
  c.aux1 = rand_vec(6, 1);
  real *dx = xcalloc(48, sizeof(real)), *dw = xcalloc(8, sizeof(real));
  rmsnorm_loss(&c);
  smoe_rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.aux1, c.N, c.C, &scratch);
  check("rmsnorm dinp", c.x, dx, 48, rmsnorm_loss, &c);
  check("rmsnorm dw", c.w, dw, 8, rmsnorm_loss, &c);
  free(c.x), free(c.w), free(c.out), free(c.r), free(c.aux1), free(dx), free(dw);
}

static double rope_loss(void *p) {
  ctx_t *c = p;
  size_t n = (size_t)c->N * c->H * c->d;
  memcpy(c->out, c->x, sizeof(real) * n);
  smoe_rope_forward(c->out, c->aux1, c->aux2, c->N, c->T, c->H, c->d);
  return dotv(c->r, c->out, n);
}

static void test_rope(void **state) {
  ctx_t c = {.N = 10, .T = 5, .H = 3, .d = 6};
  size_t n = 180;
  c.x = rand_vec(n, 1), c.out = rand_vec(n, 1), c.r = rand_vec(n, 1);
  c.aux1 = xmalloc(sizeof(real) * 15), c.aux2 = xmalloc(sizeof(real) * 15);
  smoe_rope_tables(c.aux1, c.aux2, c.T, c.d, 10000.0);
  real *dx = xmalloc(sizeof(real) * n);
  memcpy(dx, c.r, sizeof(real) * n);
  smoe_rope_backward(dx, c.aux1, c.aux2, c.N, c.T, c.H, c.d);
  check("rope dx", c.x, dx, n, rope_loss, &c);
  /* HF convention: position 1, pair (j, j + d/2) rotated by inv_freq[j] */
  real y[6] = {1, 0, 0, 0, 0, 0};
  real cs[12], sn[12];
  smoe_rope_tables(cs, sn, 2, 6, 10000.0);
  real x2[12] = {0};
  x2[6] = 1; /* position 1, x1[0] = 1 */
  smoe_rope_forward(x2, cs, sn, 2, 2, 1, 6);
  assert_true(fabs(x2[6] - cos(1.0)) < 1e-12 && fabs(x2[9] - sin(1.0)) < 1e-12);
  (void)y;
  free(c.x), free(c.out), free(c.r), free(c.aux1), free(c.aux2), free(dx);
}

static double attn_loss(void *p) {
  ctx_t *c = p;
  smoe_attention_forward(c->out, c->aux3, c->x, c->w, c->aux1, c->B, c->T, c->H, c->Hkv, c->d);
  return dotv(c->r, c->out, (size_t)c->B * c->T * c->H * c->d);
}

static void test_attention(void **state) {
  ctx_t c = {.B = 2, .T = 5, .H = 4, .Hkv = 2, .d = 4};
  size_t nq = 2 * 5 * 4 * 4, nk = 2 * 5 * 2 * 4;
  c.x = rand_vec(nq, 1), c.w = rand_vec(nk, 1), c.aux1 = rand_vec(nk, 1);
  c.out = rand_vec(nq, 1), c.r = rand_vec(nq, 1), c.aux3 = xcalloc(2 * 4 * 5 * 5, sizeof(real));
  real *dq = xcalloc(nq, sizeof(real)), *dk = xcalloc(nk, sizeof(real)),
       *dv = xcalloc(nk, sizeof(real));
  attn_loss(&c);
  smoe_attention_backward(dq, dk, dv, c.r, c.aux3, c.x, c.w, c.aux1, c.B, c.T, c.H, c.Hkv, c.d, &scratch);
  check("attention dq", c.x, dq, nq, attn_loss, &c);
  check("attention dk", c.w, dk, nk, attn_loss, &c);
  check("attention dv", c.aux1, dv, nk, attn_loss, &c);
  free(c.x), free(c.w), free(c.aux1), free(c.out), free(c.r), free(c.aux3);
  free(dq), free(dk), free(dv);
}

static double ce_loss(void *p) {
  ctx_t *c = p;
  memcpy(c->out, c->x, sizeof(real) * (size_t)c->N * c->V);
  return smoe_crossentropy_forward(c->out, c->idx, c->N, c->V, NULL, &scratch);
}

static void test_crossentropy(void **state) {
  ctx_t c = {.N = 5, .V = 7};
  int32_t targets[5] = {0, 6, 3, -1, 2}; /* -1: ignored position */
  c.idx = targets;
  c.x = rand_vec(35, 3), c.out = rand_vec(35, 1);
  real *dl = xmalloc(sizeof(real) * 35);
  ce_loss(&c);
  smoe_crossentropy_backward(dl, c.out, targets, 5, 7, (real)(1.0 / 4));
  check("crossentropy dlogits", c.x, dl, 35, ce_loss, &c);
  free(c.x), free(c.out), free(dl);
}

/* router: loss = r . gw + a * aux + z * zloss, selection held fixed */
static double router_loss(void *p) {
  ctx_t *c = p;
  int N = c->N, E = c->E, K = c->K;
  memcpy(c->out, c->x, sizeof(real) * (size_t)N * E);
  smoe_router_forward(c->out, c->aux1, c->idx, c->aux2, c->w, N, E, K);
  int64_t counts[64];
  double psum[16], zs;
  smoe_router_stats(counts, psum, &zs, c->out, c->aux1, c->idx, N, E, K);
  return dotv(c->r, c->aux2, (size_t)N * K) + 0.3 * smoe_router_aux_loss(counts, psum, N, E, K) +
         0.2 * zs / N;
}

static void test_router(void **state) {
  ctx_t c = {.N = 9, .E = 6, .K = 3};
  size_t ne = 54, nk = 27;
  c.x = rand_vec(ne, 2), c.out = xmalloc(sizeof(real) * ne), c.aux1 = xmalloc(sizeof(real) * 9);
  c.aux2 = xmalloc(sizeof(real) * nk), c.r = rand_vec(nk, 1), c.w = rand_vec(6, 0.05);
  c.idx = xmalloc(sizeof(int32_t) * nk);
  router_loss(&c);
  int64_t counts[18];
  double psum[6], zs;
  smoe_router_stats(counts, psum, &zs, c.out, c.aux1, c.idx, 9, 6, 3);
  real aux_dp[6];
  for (int e = 0; e < 6; e++) {
    int64_t s = counts[e] + counts[6 + e] + counts[12 + e];
    aux_dp[e] = (real)(0.3 * 6 * (double)s / 81.0);
  }
  real *dl = xmalloc(sizeof(real) * ne);
  smoe_router_backward(dl, c.out, c.aux1, c.idx, c.aux2, c.r, aux_dp, (real)(0.2 * 2 / 9.0), 9, 6, 3);
  check("router dlogits", c.x, dl, ne, router_loss, &c);
  free(c.x), free(c.out), free(c.aux1), free(c.aux2), free(c.r), free(c.w), free(c.idx), free(dl);
}

static double experts_loss(void *p) {
  ctx_t *c = p;
  int rows = c->offsets[c->E];
  smoe_experts_forward(c->out, c->aux1, c->aux2, c->x, c->w, c->offsets, c->E, c->C, c->F);
  return dotv(c->r, c->out, (size_t)rows * c->C);
}

static void test_experts(void **state) {
  int offsets[4] = {0, 4, 4, 9}; /* expert 1 gets no tokens */
  ctx_t c = {.E = 3, .C = 5, .F = 7, .offsets = offsets};
  size_t P = smoe_expert_numel(5, 7), rows = 9;
  c.x = rand_vec(rows * 5, 1), c.w = rand_vec(3 * P, 0.5), c.out = xmalloc(sizeof(real) * rows * 5);
  c.aux1 = xmalloc(sizeof(real) * rows * 14), c.aux2 = xmalloc(sizeof(real) * rows * 7);
  c.r = rand_vec(rows * 5, 1);
  real *dxe = xmalloc(sizeof(real) * rows * 5), *dw = xcalloc(3 * P, sizeof(real));
  real *dh = xmalloc(sizeof(real) * rows * 14), *da = xmalloc(sizeof(real) * rows * 7);
  experts_loss(&c);
  smoe_experts_backward(dxe, dw, dh, da, c.r, c.x, c.aux1, c.aux2, c.w, offsets, 3, 5, 7);
  check("experts dxe", c.x, dxe, rows * 5, experts_loss, &c);
  check("experts dw1|w3|w2", c.w, dw, 3 * P, experts_loss, &c);
  for (size_t i = P; i < 2 * P; i++) assert_true(dw[i] == 0); /* idle expert: no gradient */
  free(c.x), free(c.w), free(c.out), free(c.aux1), free(c.aux2), free(c.r);
  free(dxe), free(dw), free(dh), free(da);
}

static double combine_loss(void *p) {
  ctx_t *c = p;
  memset(c->out, 0, sizeof(real) * (size_t)c->N * c->C);
  smoe_moe_combine(c->out, c->x, c->w, c->pos, c->N, c->K, c->C);
  return dotv(c->r, c->out, (size_t)c->N * c->C);
}

static void test_combine(void **state) {
  int pos[8] = {3, 0, 5, 1, 2, 7, 6, 4};
  ctx_t c = {.N = 4, .K = 2, .C = 3, .pos = pos};
  c.x = rand_vec(24, 1), c.w = rand_vec(8, 1), c.out = xmalloc(sizeof(real) * 12);
  c.r = rand_vec(12, 1);
  real *dye = xmalloc(sizeof(real) * 24), *dgw = xmalloc(sizeof(real) * 8);
  smoe_moe_combine_backward(dye, dgw, c.r, c.x, c.w, pos, 4, 2, 3);
  check("combine dye", c.x, dye, 24, combine_loss, &c);
  check("combine dgw", c.w, dgw, 8, combine_loss, &c);
  free(c.x), free(c.w), free(c.out), free(c.r), free(dye), free(dgw);
}

/* --------------------------------------------------------- whole model */

typedef struct {
  smoe_model_t *m;
  int32_t *tokens;
  int B;
} model_ctx_t;

static double model_loss(void *p) {
  model_ctx_t *c = p;
  return smoe_model_forward(c->m, c->tokens, c->B);
}

static void check_model(int tied, double bias) {
  smoe_config_t cfg;
  smoe_config_defaults(&cfg);
  cfg.vocab_size = 19, cfg.dim = 8, cfg.n_layers = 2, cfg.n_heads = 4, cfg.n_kv_heads = 2;
  cfg.seq_len = 6, cfg.num_experts = 4, cfg.top_k = 2, cfg.expert_dim = 12;
  cfg.init_std = 0.5, cfg.tie_word_embeddings = tied, cfg.aux_loss_coef = 0.1;
  cfg.z_loss_coef = 0.05;
  smoe_model_t m;
  smoe_model_init(&m, &cfg, 3);
  for (size_t i = 0; i < (size_t)m.dims.L * m.dims.E; i++) m.expert_bias[i] = (real)(bias * urand());
  int32_t tokens[3 * 7];
  for (int i = 0; i < 21; i++) tokens[i] = (int32_t)((urand() + 1) * 9.4);
  model_ctx_t c = {&m, tokens, 3};
  model_loss(&c);
  smoe_model_zero_grad(&m);
  smoe_model_backward(&m);
  real *grad = xmalloc(sizeof(real) * (m.n_dense + m.n_experts));
  for (int i = 0; i < m.n_tensors; i++) {
    const smoe_tensor_t *t = &m.tensors[i];
    memcpy(grad, smoe_tensor_grad(&m, t), sizeof(real) * t->numel);
    check(t->name, smoe_tensor_data(&m, t), grad, t->numel, model_loss, &c);
  }
  free(grad);
  smoe_model_free(&m);
}

static void test_model_untied(void **state) { check_model(0, 0.0); }
static void test_model_tied_bias(void **state) { check_model(1, 0.1); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul),     cmocka_unit_test(test_rmsnorm),
      cmocka_unit_test(test_rope),       cmocka_unit_test(test_attention),
      cmocka_unit_test(test_crossentropy), cmocka_unit_test(test_router),
      cmocka_unit_test(test_experts),    cmocka_unit_test(test_combine),
      cmocka_unit_test(test_model_untied), cmocka_unit_test(test_model_tied_bias),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
