/* codec.h: the checkpoint chunk codec: one optimizer-state chunk (an array of
 * 4- or 8-byte floats) <-> a self-describing, checksummed, Zstandard-compressed
 * blob. Pure functions: no I/O, no globals; safe to call from any thread.
 *
 * Chunk layout (little-endian, SMOE_CODEC_HEADER bytes of header, then one
 * Zstandard frame of `stored` bytes):
 *   0  magic "SMCK"        4 bytes
 *   4  format version      u16 (SMOE_CODEC_VERSION)
 *   6  encoding            u8  (smoe_enc_t)
 *   7  element size        u8  (4 or 8)
 *   8  raw length n        u64 (bytes of the decoded chunk)
 *  16  checksum            u64 (smoe_codec_hash of the n decoded bytes)
 *  24  stored length       u64 (bytes of the zstd frame that follows)
 *
 * Encodings (what goes into the zstd frame):
 *   RAW_ZSTD          the bytes as they are;
 *   SHUFFLE_ZSTD      byte planes: byte 0 of every element, then every byte 1,
 *                     ...; the n % elem trailing bytes follow unchanged;
 *   XOR_SHUFFLE_ZSTD  shuffle(data XOR base), base = the same chunk of the
 *                     previous checkpoint (raw bytes, same length): restore is
 *                     a full chunk followed by its chain of deltas. */
#ifndef SMOE_CODEC_H
#define SMOE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
  SMOE_ENC_RAW_ZSTD = 1,
  SMOE_ENC_SHUFFLE_ZSTD = 2,
  SMOE_ENC_XOR_SHUFFLE_ZSTD = 3,
} smoe_enc_t;

#define SMOE_CODEC_MAGIC "SMCK"
#define SMOE_CODEC_VERSION 1
#define SMOE_CODEC_HEADER 32

/* Bytes the output of smoe_codec_encode needs for n raw bytes (header plus
 * zstd's worst case); 0 if n is too large for zstd. */
size_t smoe_codec_bound(size_t n);

/* Encodes n bytes of `data` (elements of `elem` = 4 or 8 bytes; n need not be
 * a multiple) with encoding `enc` at zstd level `level` into `out` (caller
 * owned, out_cap >= smoe_codec_bound(n) always suffices). `base` (n bytes) is
 * required for XOR_SHUFFLE_ZSTD and must be NULL otherwise. Returns the chunk
 * size, or -1 with err filled. Allocates and frees a scratch buffer of n
 * bytes for the shuffled encodings. */
int64_t smoe_codec_encode(smoe_enc_t enc, int level, const void *data, const void *base, size_t n,
                          size_t elem, void *out, size_t out_cap, smoe_err_t *err);

/* Decodes the chunk (chunk_len bytes readable; bytes after the zstd frame are
 * ignored) into `out` (n bytes, caller owned). Checks magic, version,
 * encoding, element size, that the declared raw length is n, that the frame
 * lies within chunk_len, that zstd decodes exactly n bytes, that `base` is
 * given exactly when the chunk is a delta, and the checksum of the result.
 * Returns 0, or -1 with err naming what is wrong (out is then unspecified). */
int smoe_codec_decode(const void *chunk, size_t chunk_len, const void *base, void *out, size_t n,
                      smoe_err_t *err);

/* The header of a chunk without decoding it (validates the header only).
 * Any of enc, raw, stored may be NULL. Returns 0 or -1 with err. */
int smoe_codec_info(const void *chunk, size_t chunk_len, smoe_enc_t *enc, size_t *raw,
                    size_t *stored, smoe_err_t *err);

/* The 64-bit checksum stored in chunk headers (deterministic, not
 * cryptographic; four splitmix64 lanes over 8-byte words). */
uint64_t smoe_codec_hash(const void *data, size_t n);

/* The encoding's name ("raw+zstd", ...) or "unknown". */
const char *smoe_codec_name(smoe_enc_t enc);

#endif
