/* fuzz_safetensors: libFuzzer harness for the safetensors reader
 * (engine/safetensors.c), the engine's parser of outside weight files.
 *
 * Each input is parsed twice:
 *   1. as is: a whole safetensors file (8-byte length, header, data);
 *   2. framed: the input read as "header JSON, a NUL byte, tensor data", with
 *      the correct length prefix put in front. Mutations that grow or shrink
 *      the JSON then still reach the header validation instead of stopping at
 *      a length that no longer matches; seeds in this form (run.sh writes
 *      them) make the fuzzer explore the tensor table.
 * A file that opens is then used the way the engine uses one: every tensor
 * read (those under 2^20 elements), found by name, the metadata queried,
 * closed. Invariants of an opened file are checked and a violation traps, so
 * a validation hole shows up as a crash, not only memory errors. Run by
 * tests/fuzz/run.sh. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define MAX_READ_NUMEL (1u << 20)

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "fuzz_safetensors: invariant failed at %s:%d: %s\n", __FILE__, __LINE__, \
              #cond);                                                                          \
      __builtin_trap();                                                                        \
    }                                                                                          \
  } while (0)

static void exercise(const uint8_t *data, size_t size) {
  if (size == 0) return; /* fmemopen rejects an empty buffer */
  FILE *f = fmemopen((void *)data, size, "rb");
  if (!f) return;
  smoe_err_t err = {{0}};
  smoe_st_t *st = smoe_st_open_stream(f, size, "fuzz", &err);
  if (!st) {
    CHECK(err.msg[0] != '\0'); /* a rejection always says why */
    return;
  }
  uint64_t covered = 0;
  for (int i = 0; i < smoe_st_count(st); i++) {
    const smoe_st_tensor_t *t = smoe_st_tensor(st, i);
    CHECK(t->name != NULL);
    CHECK(t->ndim >= 0 && t->ndim <= SMOE_ST_MAXDIM);
    CHECK(t->dtype >= 0 && t->dtype < SMOE_DTYPE_COUNT);
    CHECK(t->begin <= t->end && t->end <= size);
    CHECK(t->numel * smoe_dtype_size(t->dtype) == t->end - t->begin);
    covered += t->end - t->begin;
    const smoe_st_tensor_t *byname = smoe_st_find(st, t->name);
    CHECK(byname == t); /* names are unique */
    if (t->numel > MAX_READ_NUMEL) continue;
    real *buf = malloc(sizeof(real) * (t->numel ? t->numel : 1));
    CHECK(buf != NULL);
    int rc = smoe_st_read(st, t, buf, &err);
    CHECK(rc == 0); /* the header was validated against the size: reads succeed */
    free(buf);
  }
  CHECK(covered + 8 <= size); /* the tensors tile the data, no byte twice */
  const char *fmt = smoe_st_metadata(st, "format");
  if (fmt) CHECK(strlen(fmt) < size);
  (void)smoe_st_metadata(st, "");
  smoe_st_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  exercise(data, size);
  if (size == 0) return 0;

  const uint8_t *nul = memchr(data, 0, size);
  size_t hlen = nul ? (size_t)(nul - data) : size;
  size_t rest = nul ? size - hlen - 1 : 0;
  uint8_t *framed = malloc(8 + hlen + rest);
  if (!framed) return 0;
  for (int i = 0; i < 8; i++) framed[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  memcpy(framed + 8, data, hlen);
  if (rest) memcpy(framed + 8 + hlen, nul + 1, rest);
  exercise(framed, 8 + hlen + rest);
  free(framed);
  return 0;
}
