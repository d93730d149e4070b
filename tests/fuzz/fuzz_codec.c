/* fuzz_codec: libFuzzer harness for the checkpoint chunk decoder
 * (storage/codec.c), which reads chunks back from disk.
 *
 * Each input is decoded three ways:
 *   1. as is, with the raw length its header declares (capped), no base;
 *   2. the same with a base (deterministic bytes), as a delta would be;
 *   3. framed: the input's first byte picks encoding and element size, the
 *      rest is taken as the zstd frame under a correct header, so mutations
 *      reach zstd and the un-shuffle instead of stopping at the header.
 * A rejection must say why; an accepted chunk must re-encode and decode to
 * the same bytes (and hash to its header's checksum). Violations trap. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_RAW (1u << 20)

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "fuzz_codec: invariant failed at %s:%d: %s\n", __FILE__, __LINE__,      \
              #cond);                                                                          \
      __builtin_trap();                                                                        \
    }                                                                                          \
  } while (0)

static void decode(const uint8_t *chunk, size_t len, size_t n, int with_base) {
  uint8_t *base = NULL, *out = malloc(n ? n : 1);
  CHECK(out != NULL);
  if (with_base) {
    base = malloc(n ? n : 1);
    CHECK(base != NULL);
    for (size_t i = 0; i < n; i++) base[i] = (uint8_t)(i * 131 + 7);
  }
  smoe_err_t err = {{0}};
  int rc = smoe_codec_decode(chunk, len, base, out, n, &err);
  if (rc != 0) {
    CHECK(rc == -1 && err.msg[0] != '\0'); /* a rejection always says why */
  } else {
    smoe_enc_t enc;
    size_t raw, stored;
    CHECK(smoe_codec_info(chunk, len, &enc, &raw, &stored, &err) == 0);
    CHECK(raw == n && stored + SMOE_CODEC_HEADER <= len);
    CHECK((enc == SMOE_ENC_XOR_SHUFFLE_ZSTD) == with_base);
    /* re-encode: the round trip gives the same bytes */
    size_t cap = smoe_codec_bound(n);
    uint8_t *again = malloc(cap), *back = malloc(n ? n : 1);
    CHECK(again && back);
    int64_t l = smoe_codec_encode(enc, 1, out, base, n, chunk[7], again, cap, &err);
    CHECK(l > 0);
    CHECK(smoe_codec_decode(again, (size_t)l, base, back, n, &err) == 0);
    CHECK(n == 0 || memcmp(back, out, n) == 0);
    free(again);
    free(back);
  }
  free(out);
  free(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n = 0;
  smoe_err_t err = {{0}};
  if (smoe_codec_info(data, size, NULL, &n, NULL, &err) != 0) {
    CHECK(err.msg[0] != '\0');
    n = 64; /* still exercise decode's own rejection */
  }
  if (n > MAX_RAW) n = MAX_RAW;
  decode(data, size, n, 0);
  decode(data, size, n, 1);

  if (size < 3) return 0;
  /* framed: byte 0 = encoding (low 2 bits) and elem (bit 2), bytes 1-2 =
   * raw length; the rest is the zstd frame */
  static const uint8_t encs[4] = {1, 2, 3, 2};
  int enc = encs[data[0] & 3];
  size_t elem = data[0] & 4 ? 8 : 4, raw = data[1] | (size_t)data[2] << 8;
  size_t flen = size - 3;
  uint8_t *chunk = malloc(SMOE_CODEC_HEADER + flen);
  CHECK(chunk != NULL);
  memcpy(chunk, SMOE_CODEC_MAGIC, 4);
  chunk[4] = SMOE_CODEC_VERSION;
  chunk[5] = 0;
  chunk[6] = (uint8_t)enc;
  chunk[7] = (uint8_t)elem;
  for (int i = 0; i < 8; i++) {
    chunk[8 + i] = (uint8_t)((uint64_t)raw >> (8 * i));
    chunk[16 + i] = 0; /* checksum: fixed below if zstd decodes */
    chunk[24 + i] = (uint8_t)((uint64_t)flen >> (8 * i));
  }
  memcpy(chunk + SMOE_CODEC_HEADER, data + 3, flen);
  decode(chunk, SMOE_CODEC_HEADER + flen, raw, enc == SMOE_ENC_XOR_SHUFFLE_ZSTD);
  free(chunk);
  return 0;
}
