/* fuzz_plog: libFuzzer harness for the placement-record decoder
 * (ckpt/plog.c), which reads the placement log back on resume and in
 * `swiftmoe ckpt verify`.
 *
 * Each input is decoded twice:
 *   1. as is (mostly stopped by the length or the checksum);
 *   2. framed: byte 0 picks L, E, G, S (1..4 each), byte 1 the rank, the
 *      rest fills the arrays (loads, replicas, slots, own counts: one byte
 *      each), encoded as a correct version 3 record (compressed, checksum),
 *      so mutations reach the placement and own-count checks.
 * A rejection must say why. An accepted record must be a valid placement
 * (every slot empty or in range, replica counts matching the slots), and
 * (version 3) re-encode to the same bytes. Violations trap. */
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
    CHECK(err.msg[0] != '\0' && p.slot_expert == NULL && p.own == NULL);
    return;
  }
  for (size_t i = 0; i < (size_t)p.L * p.G * p.S; i++)
    CHECK(p.slot_expert[i] >= -1 && p.slot_expert[i] < p.E);
  for (size_t i = 0; i < (size_t)p.L * p.E; i++) CHECK(p.replicas[i] >= 1 && p.replicas[i] <= p.G);
  smoe_placement_t pl = {p.L, p.E, p.G, p.S, p.slot_expert, p.replicas};
  CHECK(smoe_placement_check(&pl, &err) == 0);
  if (b[0] == SMOE_PLOG_VERSION) {
    CHECK(p.own != NULL && p.rank < p.G);
    for (size_t i = 0; i < (size_t)p.L * p.E; i++) CHECK(p.own[i] <= p.loads[i]);
    size_t cap = smoe_plog_bound(p.L, p.E, p.G, p.S);
    uint8_t *again = malloc(cap);
    CHECK(again != NULL);
    size_t m = smoe_plog_encode(&p, again, cap, &err);
    CHECK(m == n && memcmp(again, b, n) == 0);
    free(again);
  }
  CHECK(smoe_plog_fingerprint(&p) == smoe_plog_fingerprint(&p));
  smoe_plog_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode(data, size);
  if (size < 2) return 0;
  const int L = 1 + (data[0] & 3), E = 1 + (data[0] >> 2 & 3), G = 1 + (data[0] >> 4 & 3),
            S = 1 + (data[0] >> 6 & 3);
  const size_t le = (size_t)L * E, lgs = (size_t)L * G * S;
  smoe_plog_t p = {L,
                   E,
                   G,
                   S,
                   42,
                   calloc(le, sizeof(int64_t)),
                   calloc(le, sizeof(int)),
                   calloc(lgs, sizeof(int)),
                   data[1] % 8,
                   calloc(le, sizeof(int64_t))};
  CHECK(p.loads && p.replicas && p.slot_expert && p.own);
  const uint8_t *at = data + 2, *end = data + size;
  for (size_t i = 0; i < le; i++) p.loads[i] = at < end ? *at++ : 0;
  for (size_t i = 0; i < le; i++) p.replicas[i] = at < end ? *at++ % 8 : 1;
  for (size_t i = 0; i < lgs; i++) p.slot_expert[i] = at < end ? (int)*at++ % 8 - 2 : -1;
  for (size_t i = 0; i < le; i++) p.own[i] = at < end ? *at++ : 0;
  size_t cap = smoe_plog_bound(L, E, G, S);
  uint8_t *b = malloc(cap);
  CHECK(b != NULL);
  smoe_err_t err;
  size_t n = smoe_plog_encode(&p, b, cap, &err);
  CHECK(n > 0);
  decode(b, n);
  smoe_plog_free(&p);
  free(b);
  return 0;
}
