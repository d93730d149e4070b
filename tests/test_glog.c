/* test_glog: the gradient log's records (ckpt/glog.h) in a real store.
 *  - records written and read back are the gradients and regions given, and
 *    applying them in order (smoe_glog_apply) gives the same bits as AdamW run
 *    directly (smoe_adamw_step) with the same gradients and scalars;
 *  - listing, reach over gaps, deleting a range;
 *  - a flipped byte in a chunk, a missing chunk, and a damaged header are
 *    each refused with a message naming the step (and the chunk);
 *  - check refuses a record that does not fit the regions. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "glog.h"
#include "optim.h"
#include "store.h"

#define N 50000 /* values per region: several chunks of CHUNK bytes */
#define CHUNK (64u * 1024u)
#define STEPS 5
enum { P, M, V, W, NREG };

typedef struct {
  char dir[64];
  smoe_store_t *s;
  real p[N], m[N], v[N];
  double w[3];
  real g[STEPS + 1][N];
  smoe_ckpt_region_t reg[NREG];
} fx_t;

static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  return z ^ (z >> 31);
}
static real uniform(uint64_t *s) { return (real)((double)(mix(s) >> 11) * 0x1p-53 - 0.5); }

static const smoe_adamw_t O = {1e-3, 0.9, 0.95, 1e-8, 0.1};

static void init_state(fx_t *f) {
  uint64_t seed = 7;
  for (int i = 0; i < N; i++) f->p[i] = uniform(&seed), f->m[i] = 0, f->v[i] = 0;
  f->w[0] = f->w[1] = f->w[2] = 0;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/smoe_test_glog_%d", (int)getpid());
  smoe_err_t err;
  f->s = smoe_store_open(f->dir, 0, &err);
  if (!f->s) fail_msg("%s", err.msg);
  uint64_t seed = 99;
  for (int t = 1; t <= STEPS; t++)
    for (int i = 0; i < N; i++) f->g[t][i] = uniform(&seed) * (real)1e-2;
  f->reg[P] = (smoe_ckpt_region_t){"p", SMOE_CF_SHARD, f->p, sizeof f->p, (int)sizeof(real), NULL};
  f->reg[M] = (smoe_ckpt_region_t){"m", SMOE_CF_SHARD, f->m, sizeof f->m, (int)sizeof(real), NULL};
  f->reg[V] = (smoe_ckpt_region_t){"v", SMOE_CF_SHARD, f->v, sizeof f->v, (int)sizeof(real), NULL};
  f->reg[W] = (smoe_ckpt_region_t){"w", SMOE_CF_DATA, f->w, sizeof f->w, 8, NULL};
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  smoe_store_close(f->s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

/* Records 1..STEPS: gradient g[t], whole region w = {t, 2t, 3t}. */
static void write_log(fx_t *f) {
  smoe_glog_writer_t *w = smoe_glog_writer_new(f->s, 1, CHUNK);
  for (int t = 1; t <= STEPS; t++) {
    double whole[3] = {t, 2.0 * t, 3.0 * t};
    smoe_glog_rec_t r = {.step = t, .o = O, .clip = 1, .grad_norm = 0.5, .n_parts = 1, .n_whole = 1};
    r.part[0] = (smoe_glog_part_t){P, M, V, (int)sizeof(real), N, f->g[t]};
    r.whole[0] = (smoe_glog_whole_t){W, whole, sizeof whole};
    smoe_err_t err;
    if (smoe_glog_write(w, &r, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(r.raw, sizeof f->g[t]);
    assert_true(r.stored > 0);
  }
  smoe_glog_writer_free(w);
}

static void test_replay_is_adamw(void **state) {
  fx_t *f = *state;
  write_log(f);
  init_state(f); /* the expected: AdamW directly */
  for (int t = 1; t <= STEPS; t++) smoe_adamw_step(f->p, f->g[t], f->m, f->v, N, &O, t);
  real want[N];
  memcpy(want, f->p, sizeof want);
  init_state(f);
  for (int t = 1; t <= STEPS; t++) {
    smoe_glog_rec_t r;
    smoe_err_t err;
    assert_int_equal(smoe_glog_read(f->s, t, &r, &err), 1);
    assert_int_equal(r.step, t);
    assert_true(r.o.lr == O.lr && r.o.beta2 == O.beta2 && r.grad_norm == 0.5);
    assert_memory_equal(r.part[0].grad, f->g[t], sizeof f->g[t]);
    assert_int_equal(smoe_glog_check(&r, f->reg, NREG, &err), 0);
    void *scratch[1] = {r.part[0].grad};
    smoe_glog_apply(&r, f->reg, scratch);
    smoe_glog_rec_free(&r);
  }
  assert_memory_equal(f->p, want, sizeof want); /* bit for bit */
  assert_true(f->w[0] == STEPS && f->w[2] == 3.0 * STEPS);
  smoe_glog_rec_t r;
  smoe_err_t err;
  assert_int_equal(smoe_glog_read(f->s, STEPS + 1, &r, &err), 0);
}

static void test_list_reach_delete(void **state) {
  fx_t *f = *state;
  write_log(f);
  int64_t *steps;
  int n;
  uint64_t bytes;
  smoe_err_t err;
  assert_int_equal(smoe_glog_steps(f->s, &steps, &n, &bytes, &err), 0);
  assert_int_equal(n, STEPS);
  assert_true(bytes > 0);
  const int64_t base0[] = {0}, base3[] = {0, 3};
  assert_int_equal(smoe_glog_reach(steps, n, base0, 1), STEPS);
  free(steps);
  assert_int_equal(smoe_glog_delete(f->s, 3, 4, &err), 0); /* a gap at 3 */
  assert_int_equal(smoe_glog_steps(f->s, &steps, &n, NULL, &err), 0);
  assert_int_equal(n, STEPS - 1);
  assert_int_equal(smoe_glog_reach(steps, n, base0, 1), 2);
  assert_int_equal(smoe_glog_reach(steps, n, base3, 2), STEPS); /* from the checkpoint of 3 */
  assert_int_equal(smoe_glog_reach(steps, n, NULL, 0), -1);
  free(steps);
  smoe_glog_rec_t r;
  assert_int_equal(smoe_glog_read(f->s, 3, &r, &err), 0); /* chunks and header both gone */
}

static void test_damage_is_refused(void **state) {
  fx_t *f = *state;
  write_log(f);
  smoe_err_t err;
  smoe_glog_rec_t r;
  /* a flipped byte in chunk 1 of step 2 */
  uint8_t k[13] = {0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1};
  void *v;
  size_t n;
  assert_int_equal(smoe_store_get(f->s, SMOE_CF_GRADS, k, sizeof k, &v, &n, &err), 1);
  ((uint8_t *)v)[n / 2] ^= 1;
  assert_int_equal(smoe_store_put(f->s, SMOE_CF_GRADS, k, sizeof k, v, n, &err), 0);
  free(v);
  assert_int_equal(smoe_glog_read(f->s, 2, &r, &err), -1);
  assert_non_null(strstr(err.msg, "step 2, part 0 chunk 1"));
  /* chunk 0 of step 3 missing */
  k[7] = 3, k[12] = 0;
  assert_int_equal(smoe_store_delete(f->s, SMOE_CF_GRADS, k, sizeof k, &err), 0);
  assert_int_equal(smoe_glog_read(f->s, 3, &r, &err), -1);
  assert_non_null(strstr(err.msg, "missing"));
  /* a damaged header of step 4 */
  uint8_t h[9] = {'l', 0, 0, 0, 0, 0, 0, 0, 4};
  assert_int_equal(smoe_store_get(f->s, SMOE_CF_META, h, sizeof h, &v, &n, &err), 1);
  ((uint8_t *)v)[20] ^= 1;
  assert_int_equal(smoe_store_put(f->s, SMOE_CF_META, h, sizeof h, v, n, &err), 0);
  assert_int_equal(smoe_glog_read(f->s, 4, &r, &err), -1);
  assert_non_null(strstr(err.msg, "step 4"));
  assert_non_null(strstr(err.msg, "bad checksum"));
  /* and a short one */
  assert_int_equal(smoe_store_put(f->s, SMOE_CF_META, h, sizeof h, v, 7, &err), 0);
  free(v);
  assert_int_equal(smoe_glog_read(f->s, 4, &r, &err), -1);
  /* step 5 is intact */
  assert_int_equal(smoe_glog_read(f->s, 5, &r, &err), 1);
  /* ... but does not fit other regions */
  f->reg[M].bytes -= sizeof(real);
  assert_int_equal(smoe_glog_check(&r, f->reg, NREG, &err), -1);
  assert_non_null(strstr(err.msg, "does not fit"));
  f->reg[M].bytes += sizeof(real);
  assert_int_equal(smoe_glog_check(&r, f->reg, W, &err), -1); /* no region W */
  smoe_glog_rec_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_replay_is_adamw, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_reach_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damage_is_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
