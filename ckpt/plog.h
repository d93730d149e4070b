/* plog.h: one record of the placement log, and its byte format. Pure: no
 * store, no MPI (ckpt.h keeps the records in the state store; the fuzzer
 * tests/fuzz/fuzz_plog.c drives the decoder).
 *
 * A record of step s, written by rank `rank`: the global loads of step s - 1
 * (L, E: tokens routed to each expert, before any drop), this rank's own
 * share of them (own, L x E: the tokens it routed to each expert), and the
 * placement planned from them for step s: replicas (L, E) and slot_expert
 * (L, G, S). Every rank writes the same loads and placement; the own rows of
 * all ranks together are the per-source counts the planner and the split
 * used (policy.h), so a replay (`swiftmoe ckpt replay`) has every input.
 *
 * Little-endian, version 3:
 *   u8 version (3), u8 0, u16 L, E, G, S, i64 step, u16 rank,
 *   a codec chunk (codec.h, shuffle + zstd, 4-byte elements) of the u32
 *     arrays loads (L*E), replicas (L*E), slot_expert + 1 (L*G*S), own (L*E),
 *   u64 checksum (smoe_codec_hash of every byte before it).
 * Versions 1 and 2 (before December 2026: the arrays as u32 loads, u16
 * replicas, i16 slots, uncompressed, no rank and no own counts; version 1
 * without the checksum) are still read, with own = NULL.
 *
 * A record is accepted only if it is a valid placement: every slot empty
 * (-1) or an expert in 0..E-1, every expert placed in every layer, no expert
 * twice on one rank, and the replica counts equal to the slot map's; and
 * (version 3) the rank below G and every expert's own count at most its
 * load. So a record that decodes can be used as it is. */
#ifndef SMOE_PLOG_H
#define SMOE_PLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct {
  int L, E, G, S;
  int64_t step;
  int64_t *loads;
  int *replicas, *slot_expert;
  int rank;     /* the rank that wrote it (0 for versions 1 and 2) */
  int64_t *own; /* (L, E) or NULL (versions 1 and 2) */
} smoe_plog_t;

#define SMOE_PLOG_VERSION 3

/* The most bytes a record of these shapes takes (0: too large). */
size_t smoe_plog_bound(int L, int E, int G, int S);
/* Writes p (own may be NULL: zeros) into out (cap >= smoe_plog_bound).
 * Shapes and rank must fit u16, counts u32. Returns the record's length, or
 * 0 with err (zstd failed). */
size_t smoe_plog_encode(const smoe_plog_t *p, uint8_t *out, size_t cap, smoe_err_t *err);
/* Parses and checks a record (allocating p's arrays; smoe_plog_free). Returns
 * 0, or -1 with err saying what is wrong (p then holds nothing). */
int smoe_plog_decode(smoe_plog_t *p, const void *v, size_t n, smoe_err_t *err);
void smoe_plog_free(smoe_plog_t *p);
/* A fingerprint of the planned placement (shapes and slot_expert): equal on
 * every rank that holds the same record. */
uint64_t smoe_plog_fingerprint(const smoe_plog_t *p);

#endif
