/* plog.c: the placement record's byte format (see plog.h). */
#include "plog.h"

#include <string.h>

#include "codec.h"
#include "placement.h"

#define HEAD 18 /* version, 0, L, E, G, S, step */

size_t smoe_plog_size(int L, int E, int G, int S) {
  size_t le = (size_t)L * (size_t)E, lgs = (size_t)L * (size_t)G * (size_t)S;
  return HEAD + le * 6 + lgs * 2 + 8;
}

static uint8_t *put(uint8_t *o, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) o[i] = (uint8_t)(v >> (8 * i));
  return o + bytes;
}
static uint64_t get(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

void smoe_plog_encode(const smoe_plog_t *p, uint8_t *out) {
  const size_t le = (size_t)p->L * p->E, lgs = (size_t)p->L * p->G * p->S;
  uint8_t *o = out;
  o = put(o, SMOE_PLOG_VERSION, 1);
  o = put(o, 0, 1);
  o = put(o, (uint64_t)p->L, 2), o = put(o, (uint64_t)p->E, 2);
  o = put(o, (uint64_t)p->G, 2), o = put(o, (uint64_t)p->S, 2);
  o = put(o, (uint64_t)p->step, 8);
  for (size_t i = 0; i < le; i++) o = put(o, (uint64_t)p->loads[i], 4);
  for (size_t i = 0; i < le; i++) o = put(o, (uint64_t)p->replicas[i], 2);
  for (size_t i = 0; i < lgs; i++) o = put(o, (uint16_t)(int16_t)p->slot_expert[i], 2);
  put(o, smoe_codec_hash(out, (size_t)(o - out)), 8);
}

void smoe_plog_free(smoe_plog_t *p) {
  free(p->loads), free(p->replicas), free(p->slot_expert);
  memset(p, 0, sizeof *p);
}

int smoe_plog_decode(smoe_plog_t *p, const void *v, size_t n, smoe_err_t *err) {
  memset(p, 0, sizeof *p);
  const uint8_t *b = v;
  if (n < HEAD) return smoe_fail(err, "%zu bytes, shorter than a record's header", n);
  const unsigned version = b[0];
  if (version != 1 && version != SMOE_PLOG_VERSION)
    return smoe_fail(err, "format version %u; this build reads 1 and %d", version,
                     SMOE_PLOG_VERSION);
  const int L = (int)get(b + 2, 2), E = (int)get(b + 4, 2), G = (int)get(b + 6, 2),
            S = (int)get(b + 8, 2);
  if (L < 1 || E < 1 || G < 1 || S < 1)
    return smoe_fail(err, "shapes L %d, E %d, G %d, S %d: each must be at least 1", L, E, G, S);
  const size_t want = smoe_plog_size(L, E, G, S) - (version == 1 ? 8 : 0);
  if (n != want)
    return smoe_fail(err, "%zu bytes; L %d, E %d, G %d, S %d make %zu", n, L, E, G, S, want);
  if (version >= 2 && get(b + n - 8, 8) != smoe_codec_hash(b, n - 8))
    return smoe_fail(err, "checksum mismatch: the record is corrupted");
  const size_t le = (size_t)L * E, lgs = (size_t)L * G * S;
  *p = (smoe_plog_t){L,
                     E,
                     G,
                     S,
                     (int64_t)get(b + 10, 8),
                     xmalloc(sizeof(int64_t) * le),
                     xmalloc(sizeof(int) * le),
                     xmalloc(sizeof(int) * lgs)};
  const uint8_t *at = b + HEAD;
  for (size_t i = 0; i < le; i++, at += 4) p->loads[i] = (int64_t)get(at, 4);
  for (size_t i = 0; i < le; i++, at += 2) p->replicas[i] = (int)get(at, 2);
  for (size_t i = 0; i < lgs; i++, at += 2) p->slot_expert[i] = (int16_t)get(at, 2);
  smoe_placement_t pl = {L, E, G, S, p->slot_expert, p->replicas}; /* a view, not owned */
  smoe_err_t e;
  if (smoe_placement_check(&pl, &e) != 0) {
    smoe_plog_free(p);
    return smoe_fail(err, "not a valid placement: %s", e.msg);
  }
  return 0;
}

uint64_t smoe_plog_fingerprint(const smoe_plog_t *p) {
  uint64_t h = smoe_mix64(((uint64_t)p->L << 48) ^ ((uint64_t)p->E << 32) ^ ((uint64_t)p->G << 16) ^
                          (uint64_t)p->S);
  for (size_t i = 0; i < (size_t)p->L * p->G * p->S; i++)
    h = smoe_mix64(h ^ (uint64_t)(p->slot_expert[i] + 1));
  return h;
}
