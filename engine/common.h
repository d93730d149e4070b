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

#include "elem.h"

#ifdef SMOE_REAL_DOUBLE
typedef double real;
#define SMOE_REAL_NAME "double"
static inline real r_exp(real x) { return smoe_exp_f64(x); }
#else
typedef float real;
#define SMOE_REAL_NAME "float"
/* exp for float: elem.h's polynomial, which the compiler vectorizes */
static inline float r_exp(float x) { return smoe_exp_f32(x); }
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

/* The whole file at path as a NUL-terminated string (free it), or NULL with
 * err: "cannot open PATH: why", or "PATH is larger than 64 MB; not WHAT". */
char *smoe_read_text(const char *path, const char *what, smoe_err_t *err);

/* Monotonic wall clock in seconds. */
double smoe_now(void);

#endif
