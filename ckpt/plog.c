/* plog.c: the placement record's byte format (see plog.h). */
#include "plog.h"

#include <string.h>

#include "codec.h"
#include "placement.h"

#define HEAD 18  /* version, 0, L, E, G, S, step */
#define HEAD3 20 /* ... and the rank (version 3) */
#define ZLEVEL 3 /* zstd level of the arrays */

static size_t body_bytes(int L, int E, int G, int S) { /* version 3's u32 arrays */
  return 4 * (3 * (size_t)L * E + (size_t)L * G * S);
}

size_t smoe_plog_bound(int L, int E, int G, int S) {
  size_t c = smoe_codec_bound(body_bytes(L, E, G, S));
  return c ? HEAD3 + c + 8 : 0;
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

size_t smoe_plog_encode(const smoe_plog_t *p, uint8_t *out, size_t cap, smoe_err_t *err) {
  const size_t le = (size_t)p->L * p->E, lgs = (size_t)p->L * p->G * p->S;
  const size_t nb = body_bytes(p->L, p->E, p->G, p->S);
  uint8_t *o = out;
  o = put(o, SMOE_PLOG_VERSION, 1);
  o = put(o, 0, 1);
  o = put(o, (uint64_t)p->L, 2), o = put(o, (uint64_t)p->E, 2);
  o = put(o, (uint64_t)p->G, 2), o = put(o, (uint64_t)p->S, 2);
  o = put(o, (uint64_t)p->step, 8);
  o = put(o, (uint64_t)p->rank, 2);
  uint8_t *body = xmalloc(nb), *b = body;
  for (size_t i = 0; i < le; i++) b = put(b, (uint64_t)p->loads[i], 4);
  for (size_t i = 0; i < le; i++) b = put(b, (uint64_t)p->replicas[i], 4);
  for (size_t i = 0; i < lgs; i++) b = put(b, (uint64_t)(p->slot_expert[i] + 1), 4);
  for (size_t i = 0; i < le; i++) b = put(b, p->own ? (uint64_t)p->own[i] : 0, 4);
  int64_t z =
      smoe_codec_encode(SMOE_ENC_SHUFFLE_ZSTD, ZLEVEL, body, NULL, nb, 4, o, cap - HEAD3 - 8, err);
  free(body);
  if (z < 0) return 0;
  o += z;
  put(o, smoe_codec_hash(out, (size_t)(o - out)), 8);
  return (size_t)(o - out) + 8;
}

void smoe_plog_free(smoe_plog_t *p) {
  free(p->loads), free(p->replicas), free(p->slot_expert), free(p->own);
  memset(p, 0, sizeof *p);
}

/* Versions 1 and 2: fixed-width arrays after the header. */
static int decode_v12(smoe_plog_t *p, const uint8_t *b, size_t n, unsigned version,
                      smoe_err_t *err) {
  const int L = p->L, E = p->E, G = p->G, S = p->S;
  const size_t le = (size_t)L * E, lgs = (size_t)L * G * S;
  const size_t want = HEAD + le * 6 + lgs * 2 + (version == 2 ? 8 : 0);
  if (n != want)
    return smoe_fail(err, "%zu bytes; L %d, E %d, G %d, S %d make %zu", n, L, E, G, S, want);
  if (version == 2 && get(b + n - 8, 8) != smoe_codec_hash(b, n - 8))
    return smoe_fail(err, "checksum mismatch: the record is corrupted");
  p->loads = xmalloc(sizeof(int64_t) * le);
  p->replicas = xmalloc(sizeof(int) * le);
  p->slot_expert = xmalloc(sizeof(int) * lgs);
  const uint8_t *at = b + HEAD;
  for (size_t i = 0; i < le; i++, at += 4) p->loads[i] = (int64_t)get(at, 4);
  for (size_t i = 0; i < le; i++, at += 2) p->replicas[i] = (int)get(at, 2);
  for (size_t i = 0; i < lgs; i++, at += 2) p->slot_expert[i] = (int16_t)get(at, 2);
  return 0;
}

static int decode_v3(smoe_plog_t *p, const uint8_t *b, size_t n, smoe_err_t *err) {
  const int L = p->L, E = p->E, G = p->G, S = p->S;
  const size_t le = (size_t)L * E, lgs = (size_t)L * G * S, nb = body_bytes(L, E, G, S);
  if (n < HEAD3 + SMOE_CODEC_HEADER + 8)
    return smoe_fail(err, "%zu bytes, shorter than a version 3 record can be", n);
  if (get(b + n - 8, 8) != smoe_codec_hash(b, n - 8))
    return smoe_fail(err, "checksum mismatch: the record is corrupted");
  size_t stored = 0;
  smoe_err_t e;
  if (smoe_codec_info(b + HEAD3, n - HEAD3 - 8, NULL, NULL, &stored, &e) != 0)
    return smoe_fail(err, "its arrays: %s", e.msg);
  if (HEAD3 + SMOE_CODEC_HEADER + stored + 8 != n)
    return smoe_fail(err, "%zu bytes, but its arrays' chunk says %zu", n,
                     HEAD3 + SMOE_CODEC_HEADER + stored + 8);
  p->rank = (int)get(b + HEAD, 2);
  if (p->rank >= G) return smoe_fail(err, "written by rank %d of G %d", p->rank, G);
  uint8_t *body = xmalloc(nb);
  if (smoe_codec_decode(b + HEAD3, n - HEAD3 - 8, NULL, body, nb, &e) != 0) {
    free(body);
    return smoe_fail(err, "its arrays: %s", e.msg);
  }
  p->loads = xmalloc(sizeof(int64_t) * le);
  p->replicas = xmalloc(sizeof(int) * le);
  p->slot_expert = xmalloc(sizeof(int) * lgs);
  p->own = xmalloc(sizeof(int64_t) * le);
  const uint8_t *at = body;
  for (size_t i = 0; i < le; i++, at += 4) p->loads[i] = (int64_t)get(at, 4);
  for (size_t i = 0; i < le; i++, at += 4) p->replicas[i] = (int)(int32_t)get(at, 4);
  for (size_t i = 0; i < lgs; i++, at += 4) p->slot_expert[i] = (int)(int32_t)get(at, 4) - 1;
  for (size_t i = 0; i < le; i++, at += 4) p->own[i] = (int64_t)get(at, 4);
  free(body);
  for (size_t i = 0; i < le; i++)
    if (p->own[i] > p->loads[i])
      return smoe_fail(err,
                       "layer %zu: rank %d routed %lld tokens to expert %zu, more than its "
                       "load %lld",
                       i / E, p->rank, (long long)p->own[i], i % E, (long long)p->loads[i]);
  return 0;
}

int smoe_plog_decode(smoe_plog_t *p, const void *v, size_t n, smoe_err_t *err) {
  memset(p, 0, sizeof *p);
  const uint8_t *b = v;
  if (n < HEAD) return smoe_fail(err, "%zu bytes, shorter than a record's header", n);
  const unsigned version = b[0];
  if (version < 1 || version > SMOE_PLOG_VERSION)
    return smoe_fail(err, "format version %u; this build reads 1 to %d", version,
                     SMOE_PLOG_VERSION);
  p->L = (int)get(b + 2, 2), p->E = (int)get(b + 4, 2), p->G = (int)get(b + 6, 2);
  p->S = (int)get(b + 8, 2), p->step = (int64_t)get(b + 10, 8);
  if (p->L < 1 || p->E < 1 || p->G < 1 || p->S < 1) {
    smoe_fail(err, "shapes L %d, E %d, G %d, S %d: each must be at least 1", p->L, p->E, p->G,
              p->S);
    memset(p, 0, sizeof *p);
    return -1;
  }
  int rc = version == 3 ? decode_v3(p, b, n, err) : decode_v12(p, b, n, version, err);
  smoe_placement_t pl = {p->L, p->E, p->G, p->S, p->slot_expert, p->replicas}; /* a view */
  smoe_err_t e;
  if (rc == 0 && smoe_placement_check(&pl, &e) != 0)
    rc = smoe_fail(err, "not a valid placement: %s", e.msg);
  if (rc != 0) smoe_plog_free(p);
  return rc;
}

uint64_t smoe_plog_fingerprint(const smoe_plog_t *p) {
  uint64_t h = smoe_mix64(((uint64_t)p->L << 48) ^ ((uint64_t)p->E << 32) ^ ((uint64_t)p->G << 16) ^
                          (uint64_t)p->S);
  for (size_t i = 0; i < (size_t)p->L * p->G * p->S; i++)
    h = smoe_mix64(h ^ (uint64_t)(p->slot_expert[i] + 1));
  return h;
}
