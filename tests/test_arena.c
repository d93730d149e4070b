/* test_arena: the scratch arena's stack order, its overflow blocks, and that
 * a repeated sequence of takes allocates only the first time. */
#include <string.h>

/* cmocka.h needs these four first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "arena.h"

/* One "step": nested takes, as the engine's functions make them. */
static void nested(smoe_arena_t *a, size_t big) {
  size_t m0 = smoe_arena_mark(a);
  char *outer = smoe_arena_take(a, 100);
  memset(outer, 7, 100);
  size_t m1 = smoe_arena_mark(a);
  char *inner = smoe_arena_zero(a, big, 1);
  for (size_t i = 0; i < big; i++) assert_int_equal(inner[i], 0);
  memset(inner, 9, big);
  smoe_arena_release(a, m1);
  for (int i = 0; i < 100; i++) assert_int_equal(outer[i], 7); /* untouched by the inner release */
  char *again = smoe_arena_take(a, 50);                        /* reuses the inner's place */
  memset(again, 1, 50);
  for (int i = 0; i < 100; i++) assert_int_equal(outer[i], 7);
  smoe_arena_release(a, m0);
}

static void test_stack_and_growth(void **state) {
  (void)state;
  smoe_arena_t a = {0};
  nested(&a, 1000); /* nothing fits at first: every take is a block of its own */
  assert_int_equal(smoe_arena_mark(&a), 0);
  assert_null(a.over);
  int64_t grown = a.grows;
  assert_true(grown > 0 && a.cap >= a.peak);
  for (int i = 0; i < 5; i++) nested(&a, 1000); /* the same again: no allocation */
  assert_int_equal(a.grows, grown);
  nested(&a, 5000); /* more than ever: grows once more, then holds */
  assert_true(a.grows > grown);
  grown = a.grows;
  nested(&a, 5000);
  nested(&a, 10);
  assert_int_equal(a.grows, grown);
  smoe_arena_free(&a);
}

/* An outer take served by an overflow block while the main block is empty
 * must survive an inner function's release to its own mark. */
static void test_outer_overflow_survives(void **state) {
  (void)state;
  smoe_arena_t a = {0};
  size_t m0 = smoe_arena_mark(&a);
  int *outer = smoe_arena_take(&a, 64 * sizeof(int));
  for (int i = 0; i < 64; i++) outer[i] = i;
  size_t m1 = smoe_arena_mark(&a);
  assert_true(m1 > m0);
  int *inner = smoe_arena_take(&a, 4096);
  memset(inner, 0xff, 4096);
  smoe_arena_release(&a, m1);
  assert_non_null(a.over); /* the outer block is still held */
  for (int i = 0; i < 64; i++) assert_int_equal(outer[i], i);
  smoe_arena_release(&a, m0);
  assert_null(a.over);
  smoe_arena_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_stack_and_growth),
                                     cmocka_unit_test(test_outer_overflow_survives)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
