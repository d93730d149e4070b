/* common.h: the engine's scalar type, error reporting and small helpers.
 *
 * `real` is the compute and storage type of every parameter, gradient and
 * activation: float by default, double when built with SMOE_REAL_DOUBLE
 * (CMake option SMOE_DOUBLE, and always for the gradient-check tests). */
#ifndef SMOE_COMMON_H
#define SMOE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <math.h>

#ifdef SMOE_REAL_DOUBLE
typedef double real;
#define SMOE_REAL_NAME "double"
static inline real r_exp(real x) { return exp(x); }
#else
typedef float real;
#define SMOE_REAL_NAME "float"
/* exp for float: a Cephes-style polynomial (relative error < 2e-7, i.e. about
 * 1 ulp) that, unlike libm's expf, the compiler vectorizes inside loops. */
static inline float r_exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x); /* 2^n stays a normal float */
  float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* x - n ln2, in two parts */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union { float f; int32_t i; } scale = {.i = ((int32_t)n + 127) << 23};
  return p * scale.f;
}
#endif

/* Errors a user can cause (bad config, bad file) travel as a message in a
 * caller-owned buffer and a non-zero return; they are never asserts. */
#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define SMOE_PATHLEN 1024 /* longest file path the engine builds */
#define SMOE_ERRLEN 512
typedef struct {
  char msg[SMOE_ERRLEN];
} smoe_err_t;

/* Formats into err (if non-NULL) and returns -1, so callers can write
 * `return smoe_fail(err, "...", ...);`. */
int smoe_fail(smoe_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends formatted text to the string in b (size n), truncating. */
void smoe_append(char *b, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Allocation that cannot fail silently: aborts with the size and call site. */
void *smoe_xmalloc(size_t n, const char *file, int line);
void *smoe_xcalloc(size_t n, size_t size, const char *file, int line);
#define xmalloc(n) smoe_xmalloc((n), __FILE__, __LINE__)
void *smoe_xrealloc(void *p, size_t n, const char *file, int line);
#define xcalloc(n, s) smoe_xcalloc((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) smoe_xrealloc((p), (n), __FILE__, __LINE__)

/* size_t multiply that aborts on overflow (sizes come from user config). */
size_t smoe_mul(size_t a, size_t b);

/* splitmix64: deterministic 64-bit mixing, for seeds and hashes. */
uint64_t smoe_mix64(uint64_t x);

/* Monotonic wall clock in seconds. */
double smoe_now(void);

#endif
