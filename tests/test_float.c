/* test_float: the float build's own pieces: the vectorizable exp against
 * libm in double; the bf16 rounding of GEMM operands (elem.h) against
 * round-to-nearest-even worked out by hand. */
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

static void test_bf16_rounding(void **state) {
  (void)state;
  /* bf16 keeps 8 significant bits: near 1 its step is 2^-7 */
  const float one = 1.0f, step = 0x1p-7f;
  assert_true(smoe_bf16_round(one) == one);
  assert_true(smoe_bf16_round(one + step) == one + step);            /* exact */
  assert_true(smoe_bf16_round(one + step / 2) == one);               /* tie: to even (1) */
  assert_true(smoe_bf16_round(one + 3 * step / 2) == one + 2 * step); /* tie: to even */
  assert_true(smoe_bf16_round(one + step / 2 + 0x1p-20f) == one + step); /* above the tie */
  assert_true(smoe_bf16_round(-one - step / 4) == -one);
  assert_true(smoe_bf16_bits(one) == 0x3f80 && smoe_bf16_bits(-2.0f) == 0xc000);
  assert_true(isinf(smoe_bf16_round(INFINITY)) && isnan(smoe_bf16_round(NAN)));
  assert_true(isinf(smoe_bf16_round(0x1.fffffep127f))); /* rounds past the largest bf16 */
  assert_true(smoe_bf16_round(0x1p-133f) == 0x1p-133f); /* a bf16 subnormal: kept */
  assert_true(smoe_bf16_round(0x1p-140f) == 0);         /* below half its step: 0 */
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_exp_accuracy),
                                     cmocka_unit_test(test_bf16_rounding)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
