/* plog.h: one record of the placement log, and its byte format. Pure: no
 * store, no MPI (ckpt.h keeps the records in the state store; the fuzzer
 * tests/fuzz/fuzz_plog.c drives the decoder).
 *
 * A record of step s: the global loads of step s (L, E), and the placement
 * planned from them for step s + 1: replicas (L, E) and slot_expert (L, G, S).
 * Little-endian, version 2:
 *   u8 version (2), u8 0, u16 L, E, G, S, i64 step,
 *   u32 loads (L*E), u16 replicas (L*E), i16 slot_expert (L*G*S),
 *   u64 checksum (smoe_codec_hash of every byte before it).
 * Version 1 (written before December 2026) is the same without the checksum;
 * it is still read. A record is accepted only if it is a valid placement:
 * every slot empty (-1) or an expert in 0..E-1, every expert placed in every
 * layer, no expert twice on one rank, and the replica counts equal to the
 * slot map's. So a record that decodes can be used as it is. */
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
} smoe_plog_t;

#define SMOE_PLOG_VERSION 2

/* Bytes of a record of these shapes. */
size_t smoe_plog_size(int L, int E, int G, int S);
/* Writes p into out (smoe_plog_size bytes). Shapes must fit u16, loads u32. */
void smoe_plog_encode(const smoe_plog_t *p, uint8_t *out);
/* Parses and checks a record (allocating p's arrays; smoe_plog_free). Returns
 * 0, or -1 with err saying what is wrong (p then holds nothing). */
int smoe_plog_decode(smoe_plog_t *p, const void *v, size_t n, smoe_err_t *err);
void smoe_plog_free(smoe_plog_t *p);
/* A fingerprint of the planned placement (shapes and slot_expert): equal on
 * every rank that holds the same record. */
uint64_t smoe_plog_fingerprint(const smoe_plog_t *p);

#endif
