#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int smoe_fail(smoe_err_t *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

void smoe_append(char *b, size_t n, const char *fmt, ...) {
  size_t at = strlen(b);
  if (at + 1 >= n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b + at, n - at, fmt, ap);
  va_end(ap);
}

void *smoe_xrealloc(void *p, size_t n, const char *file, int line) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "swiftmoe: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    exit(1);
  }
  return q;
}

void *smoe_xmalloc(size_t n, const char *file, int line) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "swiftmoe: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    exit(1);
  }
  return p;
}

void *smoe_xcalloc(size_t n, size_t size, const char *file, int line) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "swiftmoe: out of memory allocating %zu x %zu bytes at %s:%d\n", n, size, file,
            line);
    exit(1);
  }
  return p;
}

size_t smoe_mul(size_t a, size_t b) {
  if (a != 0 && b > SIZE_MAX / a) {
    fprintf(stderr, "swiftmoe: size overflow (%zu x %zu)\n", a, b);
    exit(1);
  }
  return a * b;
}

double smoe_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t smoe_mix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

char *smoe_read_text(const char *path, const char *what, smoe_err_t *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    smoe_fail(err, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0, r;
  char *buf = xmalloc(cap);
  while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0) {
      if (cap > (64u << 20)) {
        fclose(f), free(buf);
        smoe_fail(err, "%s is larger than 64 MB; not %s", path, what);
        return NULL;
      }
      char *b = realloc(buf, cap *= 2);
      if (!b) fclose(f), free(buf), exit(1);
      buf = b;
    }
  }
  buf[n] = '\0';
  fclose(f);
  return buf;
}
