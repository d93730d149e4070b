/* codec.c: the checkpoint chunk codec (see codec.h for the format). */
#include "codec.h"

#include <string.h>

#include <zstd.h>

const char *smoe_codec_name(smoe_enc_t enc) {
  switch (enc) {
    case SMOE_ENC_RAW_ZSTD: return "raw+zstd";
    case SMOE_ENC_SHUFFLE_ZSTD: return "shuffle+zstd";
    case SMOE_ENC_XOR_SHUFFLE_ZSTD: return "xor+shuffle+zstd";
  }
  return "unknown";
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Words are read in host byte order (memcpy), so the hash of the same bytes
 * agrees across x86-64 and aarch64 (both little-endian), the targets. */
uint64_t smoe_codec_hash(const void *data, size_t n) {
  const uint8_t *p = data;
  uint64_t h[4] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull,
                   0x27d4eb2f165667c5ull};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    memcpy(w, p + i, 32);
    for (int k = 0; k < 4; k++) h[k] = smoe_mix64(h[k] ^ w[k]);
  }
  uint64_t r = smoe_mix64((uint64_t)n);
  for (int k = 0; k < 4; k++) r = smoe_mix64(r ^ h[k]);
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    r = smoe_mix64(r ^ w);
  }
  if (i < n) {
    uint64_t w = 0;
    memcpy(&w, p + i, n - i);
    r = smoe_mix64(r ^ w ^ ((uint64_t)(n - i) << 56));
  }
  return r;
}

size_t smoe_codec_bound(size_t n) {
  size_t b = ZSTD_compressBound(n);
  if (ZSTD_isError(b) || b == 0 || b > SIZE_MAX - SMOE_CODEC_HEADER) return 0;
  return b + SMOE_CODEC_HEADER;
}

/* dst = byte planes of (src XOR base); base may be NULL. The constant elem
 * in each call lets the compiler unroll the inner loop. */
static inline void shuffle_k(uint8_t *restrict dst, const uint8_t *restrict src,
                             const uint8_t *restrict base, size_t count, size_t elem) {
  for (size_t b = 0; b < elem; b++) {
    uint8_t *plane = dst + b * count;
    if (base)
      for (size_t i = 0; i < count; i++) plane[i] = src[i * elem + b] ^ base[i * elem + b];
    else
      for (size_t i = 0; i < count; i++) plane[i] = src[i * elem + b];
  }
}
static void shuffle(uint8_t *dst, const uint8_t *src, const uint8_t *base, size_t n, size_t elem) {
  size_t count = n / elem, tail = count * elem;
  if (elem == 4) shuffle_k(dst, src, base, count, 4);
  else shuffle_k(dst, src, base, count, 8);
  for (size_t i = tail; i < n; i++) dst[i] = base ? src[i] ^ base[i] : src[i];
}
static inline void unshuffle_k(uint8_t *restrict dst, const uint8_t *restrict src,
                               const uint8_t *restrict base, size_t count, size_t elem) {
  for (size_t b = 0; b < elem; b++) {
    const uint8_t *plane = src + b * count;
    if (base)
      for (size_t i = 0; i < count; i++) dst[i * elem + b] = plane[i] ^ base[i * elem + b];
    else
      for (size_t i = 0; i < count; i++) dst[i * elem + b] = plane[i];
  }
}
static void unshuffle(uint8_t *dst, const uint8_t *src, const uint8_t *base, size_t n,
                      size_t elem) {
  size_t count = n / elem, tail = count * elem;
  if (elem == 4) unshuffle_k(dst, src, base, count, 4);
  else unshuffle_k(dst, src, base, count, 8);
  for (size_t i = tail; i < n; i++) dst[i] = base ? src[i] ^ base[i] : src[i];
}

int64_t smoe_codec_encode(smoe_enc_t enc, int level, const void *data, const void *base, size_t n,
                          size_t elem, void *out, size_t out_cap, smoe_err_t *err) {
  if (enc != SMOE_ENC_RAW_ZSTD && enc != SMOE_ENC_SHUFFLE_ZSTD && enc != SMOE_ENC_XOR_SHUFFLE_ZSTD)
    return smoe_fail(err, "codec: unknown encoding %d", (int)enc);
  if (elem != 4 && elem != 8)
    return smoe_fail(err, "codec: element size %zu is not 4 or 8", elem);
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
    return smoe_fail(err, "codec: zstd level %d is outside [%d, %d]", level, ZSTD_minCLevel(),
                     ZSTD_maxCLevel());
  const int delta = enc == SMOE_ENC_XOR_SHUFFLE_ZSTD;
  if (delta && !base) return smoe_fail(err, "codec: %s needs a base chunk", smoe_codec_name(enc));
  if (!delta && base)
    return smoe_fail(err, "codec: %s takes no base chunk", smoe_codec_name(enc));
  if (n > 0 && !data) return smoe_fail(err, "codec: no data for %zu bytes", n);
  if (out_cap < SMOE_CODEC_HEADER)
    return smoe_fail(err, "codec: output buffer of %zu bytes is smaller than the %d-byte header",
                     out_cap, SMOE_CODEC_HEADER);

  uint8_t *o = out;
  const void *src = data;
  uint8_t *scratch = NULL;
  if (enc != SMOE_ENC_RAW_ZSTD && n > 0) {
    scratch = xmalloc(n);
    shuffle(scratch, data, delta ? base : NULL, n, elem);
    src = scratch;
  }
  size_t z = ZSTD_compress(o + SMOE_CODEC_HEADER, out_cap - SMOE_CODEC_HEADER, n ? src : "", n,
                           level);
  free(scratch);
  if (ZSTD_isError(z))
    return smoe_fail(err, "codec: zstd compression of %zu bytes failed: %s", n,
                     ZSTD_getErrorName(z));

  memcpy(o, SMOE_CODEC_MAGIC, 4);
  o[4] = (uint8_t)(SMOE_CODEC_VERSION & 0xff);
  o[5] = (uint8_t)(SMOE_CODEC_VERSION >> 8);
  o[6] = (uint8_t)enc;
  o[7] = (uint8_t)elem;
  put_u64(o + 8, (uint64_t)n);
  put_u64(o + 16, smoe_codec_hash(data, n));
  put_u64(o + 24, (uint64_t)z);
  return (int64_t)(SMOE_CODEC_HEADER + z);
}

/* Validates the header; fills the fields. */
static int parse_header(const uint8_t *c, size_t len, smoe_enc_t *enc, size_t *elem, uint64_t *raw,
                        uint64_t *sum, uint64_t *stored, smoe_err_t *err) {
  if (!c || len < SMOE_CODEC_HEADER)
    return smoe_fail(err, "codec: chunk of %zu bytes is shorter than the %d-byte header", len,
                     SMOE_CODEC_HEADER);
  if (memcmp(c, SMOE_CODEC_MAGIC, 4) != 0)
    return smoe_fail(err, "codec: bad magic %02x %02x %02x %02x (expected \"SMCK\")", c[0], c[1],
                     c[2], c[3]);
  unsigned version = c[4] | (unsigned)c[5] << 8;
  if (version != SMOE_CODEC_VERSION)
    return smoe_fail(err, "codec: format version %u is not supported (this build reads %d)",
                     version, SMOE_CODEC_VERSION);
  int e = c[6];
  if (e != SMOE_ENC_RAW_ZSTD && e != SMOE_ENC_SHUFFLE_ZSTD && e != SMOE_ENC_XOR_SHUFFLE_ZSTD)
    return smoe_fail(err, "codec: unknown encoding %d", e);
  if (c[7] != 4 && c[7] != 8)
    return smoe_fail(err, "codec: element size %d is not 4 or 8", c[7]);
  *enc = (smoe_enc_t)e;
  *elem = c[7];
  *raw = get_u64(c + 8);
  *sum = get_u64(c + 16);
  *stored = get_u64(c + 24);
  if (*stored > len - SMOE_CODEC_HEADER)
    return smoe_fail(err,
                     "codec: compressed length %llu runs past the end of the %zu-byte chunk "
                     "(truncated?)",
                     (unsigned long long)*stored, len);
  return 0;
}

int smoe_codec_info(const void *chunk, size_t chunk_len, smoe_enc_t *enc, size_t *raw,
                    size_t *stored, smoe_err_t *err) {
  smoe_enc_t e = SMOE_ENC_RAW_ZSTD;
  size_t elem = 0;
  uint64_t r = 0, sum = 0, s = 0; /* set by parse_header on success */
  if (parse_header(chunk, chunk_len, &e, &elem, &r, &sum, &s, err) != 0) return -1;
  if (r > SIZE_MAX) return smoe_fail(err, "codec: raw length %llu is too large", (unsigned long long)r);
  if (enc) *enc = e;
  if (raw) *raw = (size_t)r;
  if (stored) *stored = (size_t)s;
  return 0;
}

int smoe_codec_decode(const void *chunk, size_t chunk_len, const void *base, void *out, size_t n,
                      smoe_err_t *err) {
  smoe_enc_t enc = SMOE_ENC_RAW_ZSTD; /* all set by parse_header on success */
  size_t elem = 0;
  uint64_t raw = 0, sum = 0, stored = 0;
  if (parse_header(chunk, chunk_len, &enc, &elem, &raw, &sum, &stored, err) != 0) return -1;
  if (raw != (uint64_t)n)
    return smoe_fail(err, "codec: chunk holds %llu raw bytes, expected %zu",
                     (unsigned long long)raw, n);
  const int delta = enc == SMOE_ENC_XOR_SHUFFLE_ZSTD;
  if (delta && !base)
    return smoe_fail(err, "codec: chunk is a delta (%s) but no base chunk was given",
                     smoe_codec_name(enc));
  if (!delta && base)
    return smoe_fail(err, "codec: chunk is a full chunk (%s) but a base chunk was given",
                     smoe_codec_name(enc));
  if (n > 0 && !out) return smoe_fail(err, "codec: no output buffer for %zu bytes", n);

  const uint8_t *frame = (const uint8_t *)chunk + SMOE_CODEC_HEADER;
  uint8_t *scratch = NULL, *dst = out;
  if (enc != SMOE_ENC_RAW_ZSTD && n > 0) dst = scratch = xmalloc(n);
  uint8_t empty;
  size_t got = ZSTD_decompress(n ? (void *)dst : &empty, n, frame, (size_t)stored);
  if (ZSTD_isError(got)) {
    free(scratch);
    return smoe_fail(err, "codec: corrupt zstd frame (%llu bytes): %s",
                     (unsigned long long)stored, ZSTD_getErrorName(got));
  }
  if (got != n) {
    free(scratch);
    return smoe_fail(err, "codec: zstd frame decodes to %zu bytes, header says %zu", got, n);
  }
  if (scratch) {
    unshuffle(out, scratch, delta ? base : NULL, n, elem);
    free(scratch);
  }
  uint64_t h = smoe_codec_hash(out, n);
  if (h != sum)
    return smoe_fail(err,
                     "codec: checksum mismatch: decoded %s chunk of %zu bytes hashes to %016llx, "
                     "header says %016llx (corrupt chunk%s)",
                     smoe_codec_name(enc), n, (unsigned long long)h, (unsigned long long)sum,
                     delta ? " or wrong base" : "");
  return 0;
}
