/* glog.h: the gradient log. The state after step s is a deterministic function
 * of the state after step s - 1 and what the step's optimizer applied: the
 * gradient slices after clipping and AdamW's scalars (the optimizer is
 * elementwise). So a record of step s holds exactly those, and the small
 * regions the step changes in other ways (balancing bias, planner loads,
 * position) whole; replaying records b+1..s onto the checkpoint of step b
 * with the step's own AdamW (ops->adamw) gives the state after step s bit for
 * bit. A record costs the gradient slices (4 or 8 bytes per parameter of the
 * shard) where a full checkpoint costs three times as much (master and both
 * moments).
 *
 * In the rank's store (store.h), one record per step, written in ONE synced
 * batch (all of it durable, or none of it):
 *   grads family   be64 s | u8 part | be32 chunk -> a codec chunk (codec.h:
 *                  shuffle + zstd) of at most chunk_bytes of part's gradient
 *   meta family    'l' | be64 s -> the record's header (below)
 *   placement      the placement record of s (plog.h), when given: the
 *                  placement a resume at s runs with
 * Header, little-endian: magic "SMGL", u32 version, i64 step, f64 lr, beta1,
 * beta2, eps, weight_decay, clip, grad_norm, u32 parts, u32 wholes; per part
 * u8 param, m, v (region indices), u8 elem, u64 elements, u32 chunks and per
 * chunk u64 stored bytes; per whole u8 region, u64 bytes and the bytes; u64
 * raw bytes, u64 stored bytes; u64 checksum (smoe_codec_hash of all before).
 * Every chunk carries its own checksum (codec.h). A record that fails either
 * is reported, never applied.
 *
 * Pure storage and arithmetic: no threads, no MPI (engine/saver.c runs the
 * writer thread and the resume's agreement; ckpt.c prunes and discards the
 * log with its checkpoints). */
#ifndef SMOE_GLOG_H
#define SMOE_GLOG_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "optim.h"
#include "store.h"

#define SMOE_GLOG_PARTS 2
#define SMOE_GLOG_WHOLE 4

typedef struct {
  int param, m, v; /* the regions AdamW updates with this gradient */
  int elem;        /* 4 or 8 */
  size_t n;        /* elements */
  void *grad;      /* host, n * elem bytes */
} smoe_glog_part_t;

typedef struct {
  int region; /* replaced whole by these bytes */
  void *data; /* host */
  size_t bytes;
} smoe_glog_whole_t;

typedef struct {
  int64_t step; /* the state after `step` steps: AdamW's t is `step` */
  smoe_adamw_t o;
  double clip, grad_norm; /* the clip factor already applied; the norm before it */
  int n_parts, n_whole;
  smoe_glog_part_t part[SMOE_GLOG_PARTS];
  smoe_glog_whole_t whole[SMOE_GLOG_WHOLE];
  const void *plan; /* writing: the placement record of `step` (plog encoding), or NULL */
  size_t plan_n;
  uint64_t raw, stored; /* bytes of the gradients, and as stored (header included) */
} smoe_glog_rec_t;

/* Encodes and writes records (one thread at a time): scratch for one chunk. */
typedef struct smoe_glog_writer smoe_glog_writer_t;
smoe_glog_writer_t *smoe_glog_writer_new(smoe_store_t *s, int level, size_t chunk_bytes);
void smoe_glog_writer_free(smoe_glog_writer_t *w);
/* Writes record r (its chunks, header and plan) in one synced batch; sets
 * r->raw and r->stored. 0, or -1 with err naming the store and step. */
int smoe_glog_write(smoe_glog_writer_t *w, smoe_glog_rec_t *r, smoe_err_t *err);

/* Reads and checks the record of `step` (header checksum, every chunk's
 * checksum and size) into r, its buffers malloc'd (smoe_glog_rec_free).
 * Returns 1, 0 when there is none, -1 with err naming the store, step and
 * key of what is wrong. */
int smoe_glog_read(smoe_store_t *s, int64_t step, smoe_glog_rec_t *r, smoe_err_t *err);
void smoe_glog_rec_free(smoe_glog_rec_t *r);

/* The steps that have a record header, ascending (*steps malloc'd), and the
 * stored bytes of those records (NULL: not wanted). */
int smoe_glog_steps(smoe_store_t *s, int64_t **steps, int *n, uint64_t *bytes, smoe_err_t *err);
/* Deletes the records lo <= step < hi (unsynced; headers first). */
int smoe_glog_delete(smoe_store_t *s, int64_t lo, int64_t hi, smoe_err_t *err);
/* The newest step s such that there is a step b <= s in `bases` (ascending:
 * checkpoints) and a record of every step b+1..s (headers present), or -1. */
int64_t smoe_glog_reach(const int64_t *steps, int n, const int64_t *bases, int nb);

/* Whether record r fits the regions: every index and size (a float log on a
 * double build does not). 0, or -1 with err. */
int smoe_glog_check(const smoe_glog_rec_t *r, const smoe_ckpt_region_t *regions, int n_regions,
                    smoe_err_t *err);
/* Applies a checked record r to the regions (the state after r->step - 1
 * becomes the state after r->step): each part's gradient copied to
 * scratch[i] (the regions' backend memory, n * elem bytes at least) and
 * AdamW run on the part's regions by their ops (the host's when NULL), the
 * step's own AdamW; each whole region replaced. */
void smoe_glog_apply(const smoe_glog_rec_t *r, const smoe_ckpt_region_t *regions,
                     void *const *scratch);

/* Restores checkpoint `base` of store s (rank `rank`'s) in host memory,
 * applies the records base+1..to, and compares every region with the
 * checkpoint of `to` byte for byte (`swiftmoe ckpt verify`): 0, or -1 with
 * err naming the record or the first region and byte that differ. */
int smoe_glog_verify_replay(smoe_store_t *s, int rank, int64_t base, int64_t to, smoe_err_t *err);

/* The zstd level of records: measured on real gradients (tools/bench/, see
 * the README), where shuffle + zstd at level 1 costs least writer time for
 * nearly the bytes of level 3. */
#define SMOE_GLOG_LEVEL 1

#endif
