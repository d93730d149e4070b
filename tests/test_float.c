/* test_float: the float build's own pieces: the vectorizable exp against
 * libm in double. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common.h"

static void test_exp_accuracy(void **state) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0007) {
    float xf = (float)x;
    double want = exp((double)xf), got = r_exp(xf);
    double rel = fabs(got - want) / want;
    if (rel > worst) worst = rel;
  }
  print_message("  r_exp worst relative error %.3g over [-87, 88]\n", worst);
  assert_true(worst < 4e-7);
  assert_true(r_exp(-1000.0f) >= 0 && r_exp(-1000.0f) < 1e-37f); /* clamped, no NaN */
  assert_true(isfinite(r_exp(1000.0f)));
  assert_true(r_exp(0.0f) == 1.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_exp_accuracy)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
