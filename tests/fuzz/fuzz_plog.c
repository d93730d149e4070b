/* fuzz_plog: libFuzzer harness for the placement-record decoder
 * (ckpt/plog.c), which reads the placement log back on resume and in
 * `swiftmoe ckpt verify`.
 *
 * Each input is decoded twice:
 *   1. as is (mostly stopped by the length or the checksum);
 *   2. framed: byte 0 picks L, E, G, S (1..4 each), byte 1 the version, the
 *      rest fills the body, and the harness writes a correct header and
 *      checksum, so mutations reach the placement checks.
 * A rejection must say why. An accepted record must be a valid placement
 * (every slot empty or in range, replica counts matching the slots) and
 * re-encode to the same bytes. Violations trap. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"
#include "plog.h"

#define CHECK(cond)                                                                             \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "fuzz_plog: invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap();                                                                         \
    }                                                                                           \
  } while (0)

static void decode(const uint8_t *b, size_t n) {
  smoe_plog_t p;
  smoe_err_t err = {{0}};
  if (smoe_plog_decode(&p, b, n, &err) != 0) {
    CHECK(err.msg[0] != '\0' && p.slot_expert == NULL);
    return;
  }
  for (size_t i = 0; i < (size_t)p.L * p.G * p.S; i++)
    CHECK(p.slot_expert[i] >= -1 && p.slot_expert[i] < p.E);
  for (size_t i = 0; i < (size_t)p.L * p.E; i++) CHECK(p.replicas[i] >= 1 && p.replicas[i] <= p.G);
  smoe_placement_t pl = {p.L, p.E, p.G, p.S, p.slot_expert, p.replicas};
  CHECK(smoe_placement_check(&pl, &err) == 0);
  size_t m = smoe_plog_size(p.L, p.E, p.G, p.S);
  uint8_t *again = malloc(m);
  CHECK(again != NULL);
  smoe_plog_encode(&p, again);
  if (b[0] == SMOE_PLOG_VERSION)
    CHECK(m == n && memcmp(again, b, n) == 0);
  else
    CHECK(m == n + 8 && memcmp(again + 1, b + 1, n - 1) == 0); /* version 1: no checksum */
  CHECK(smoe_plog_fingerprint(&p) == smoe_plog_fingerprint(&p));
  free(again);
  smoe_plog_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode(data, size);
  if (size < 2) return 0;
  const int L = 1 + (data[0] & 3), E = 1 + (data[0] >> 2 & 3), G = 1 + (data[0] >> 4 & 3),
            S = 1 + (data[0] >> 6 & 3);
  const int v1 = data[1] & 1;
  size_t n = smoe_plog_size(L, E, G, S) - (v1 ? 8 : 0);
  uint8_t *b = calloc(smoe_plog_size(L, E, G, S), 1); /* encode writes the checksum too */
  CHECK(b != NULL);
  /* a valid header and checksum around the fuzzer's body bytes */
  smoe_plog_t p = {L,
                   E,
                   G,
                   S,
                   42,
                   calloc((size_t)L * E, 8),
                   calloc((size_t)L * E, sizeof(int)),
                   calloc((size_t)L * G * S, sizeof(int))};
  CHECK(p.loads && p.replicas && p.slot_expert);
  smoe_plog_encode(&p, b); /* header (and zero body) */
  size_t body = n - 18 - (v1 ? 0 : 8), have = size - 2 < body ? size - 2 : body;
  memcpy(b + 18, data + 2, have);
  if (v1) {
    b[0] = 1;
  } else { /* the checksum of the new body: decode the record through encode */
    size_t le = (size_t)L * E, lgs = (size_t)L * G * S;
    const uint8_t *at = b + 18;
    for (size_t i = 0; i < le; i++, at += 4)
      p.loads[i] = (int64_t)((uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 |
                             (uint32_t)at[3] << 24);
    for (size_t i = 0; i < le; i++, at += 2) p.replicas[i] = at[0] | at[1] << 8;
    for (size_t i = 0; i < lgs; i++, at += 2) p.slot_expert[i] = (int16_t)(at[0] | at[1] << 8);
    smoe_plog_encode(&p, b);
  }
  decode(b, n);
  free(p.loads), free(p.replicas), free(p.slot_expert);
  free(b);
  return 0;
}
