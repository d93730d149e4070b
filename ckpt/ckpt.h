/* ckpt.h: checkpoints of one rank's state in its state store (storage/), and the
 * agreement between ranks on which checkpoints are complete.
 *
 * The state is a list of regions (byte arrays of 4- or 8-byte elements), each in a
 * column family: the expert optimizer shard in `shard`, this rank's slice of the
 * dense parameters and their AdamW moments in `dense`, planner and data positions
 * in `data`. A checkpoint of step s is, per region, chunks of at most chunk_bytes:
 *   key   be64 step | u8 region | be32 chunk          (in the region's family)
 *   value a codec chunk (storage/codec.h): full, or the XOR delta against the same
 *         chunk of the previous checkpoint of this rank
 * and, written LAST in one synced batch, its manifest (meta key 'm' | be64 step):
 * step, kind, the chain it belongs to, the shapes and config digest of the run,
 * each region's layout, each chunk's encoding, sizes and checksums, the write
 * time, and a checksum of the manifest itself. Chunks are written without the
 * write-ahead log and flushed into table/blob files before the manifest: a
 * manifest present means every byte it names is durable. A checkpoint is locally
 * complete when its manifest is; globally complete when every rank's is (and,
 * with copies, every rank's copy of its neighbour's: saver.h), which the ranks
 * agree on at a later step (smoe_ckpt_agreed) and record in meta
 * ('g' | be64 step).
 *
 * The placement log (family `placement`, key be64 step): one record per step,
 * see smoe_plog_*.
 *
 * Threads: smoe_ckpt_stage / finish / agree / resume and the log run on the main
 * thread (the one that calls MPI); smoe_ckpt_write runs on any one thread, between
 * a stage and its finish. */
#ifndef SMOE_CKPT_H
#define SMOE_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "comm.h"
#include "common.h"
#include "plog.h"
#include "store.h"

#define SMOE_CKPT_NAME 16 /* region names, shape names: at most 15 characters */

typedef struct {
  char name[SMOE_CKPT_NAME];
  smoe_cf_t cf;
  void *data;   /* live state: read by stage, written by restore */
  size_t bytes;
  int elem;     /* 4 or 8 */
  const smoe_ops_t *ops; /* the backend whose memory it is, copied by its ops (NULL: the host's) */
} smoe_ckpt_region_t;

/* A number that must be equal to resume (model.dim, ranks, ...). */
typedef struct {
  char name[SMOE_CKPT_NAME + 8];
  int64_t value;
} smoe_ckpt_shape_t;

typedef struct {
  int full_every;     /* a full checkpoint every N (1: all full) */
  int keep;           /* globally complete checkpoints kept */
  int level;          /* zstd level */
  size_t chunk_bytes; /* chunk size */
  smoe_enc_t full_enc, delta_enc;
  size_t log_bytes;   /* placement log budget (0: unbounded), see smoe_ckpt_log */
  int copy;           /* each write also makes a bundle for a copy elsewhere (below) */
} smoe_ckpt_opts_t;

/* What a manifest says, for listing. */
typedef struct {
  int64_t step, base_step, full_step; /* base -1 for a full checkpoint */
  int chain_len;                      /* deltas since the full one */
  int global;                         /* recorded globally complete */
  int rank, G;
  uint64_t raw_bytes, stored_bytes;
  double write_s;   /* encode + write + flush, in the writer */
  int64_t unix_time;
  int n_chunks;
  uint64_t config_digest; /* of the config the run wrote it with */
} smoe_ckpt_info_t;

typedef struct smoe_ckpt smoe_ckpt_t;

/* Opens (creating) <dir>/rank-<rank> for a run with these regions and shapes.
 * regions and shapes are copied. NULL with err on failure. */
smoe_ckpt_t *smoe_ckpt_open(const char *dir, int rank, const smoe_ckpt_region_t *regions,
                            int n_regions, const smoe_ckpt_shape_t *shapes, int n_shapes,
                            uint64_t config_digest, const smoe_ckpt_opts_t *o, smoe_err_t *err);
void smoe_ckpt_close(smoe_ckpt_t *ck);
/* The rank's store (owned by ck). */
smoe_store_t *smoe_ckpt_store(smoe_ckpt_t *ck);

/* Copies the live regions into the staging buffer as the checkpoint of `step`
 * (main thread; no write may be in flight). Returns the seconds it took. */
double smoe_ckpt_stage(smoe_ckpt_t *ck, int64_t step);
/* Encodes and writes the staged checkpoint, manifest last (any one thread).
 * The result is kept for smoe_ckpt_finish. First it compacts away the
 * checkpoints pruned since the last write (their files leave the disk). */
void smoe_ckpt_write(smoe_ckpt_t *ck);
/* A full checkpoint written from bytes produced in order (resharding: a new
 * rank's state assembled piece by piece from the old ranks'). The handle
 * holds one chunk, not the state: open it with smoe_ckpt_open_stream (the
 * regions' data unused), then begin, put the regions' bytes in region order
 * (any piece sizes: each chunk is encoded and written once full), and end:
 * the manifest, as smoe_ckpt_write writes it. After end the checkpoint is
 * pending, locally complete (0) or failed (-1, with err naming the rank,
 * step and key), for smoe_ckpt_agreed. Stage and write are not for it. */
smoe_ckpt_t *smoe_ckpt_open_stream(const char *dir, int rank, const smoe_ckpt_region_t *regions,
                                   int n_regions, const smoe_ckpt_shape_t *shapes, int n_shapes,
                                   uint64_t config_digest, const smoe_ckpt_opts_t *o,
                                   smoe_err_t *err);
void smoe_ckpt_stream_begin(smoe_ckpt_t *ck, int64_t step);
int smoe_ckpt_stream_put(smoe_ckpt_t *ck, const void *p, size_t n, smoe_err_t *err);
int smoe_ckpt_stream_end(smoe_ckpt_t *ck, smoe_err_t *err);
/* After the write: returns 0 if the staged checkpoint is locally complete (it
 * becomes the base of the next delta), or -1 with err naming the rank, step and
 * key (the next checkpoint is then a full one). */
int smoe_ckpt_finish(smoe_ckpt_t *ck, smoe_err_t *err);
/* The step staged last and not yet agreed on, or -1. */
int64_t smoe_ckpt_pending(const smoe_ckpt_t *ck);
/* This rank's status of the pending checkpoint: 1 written, 0 in flight or not
 * finished, -1 failed; 1 when none is pending. */
int smoe_ckpt_local_status(const smoe_ckpt_t *ck);
/* Every rank's status is known (status = the minimum over ranks, from one
 * all-reduce the caller makes): 1 records the pending checkpoint as globally
 * complete and prunes per keep; -1 forgets it. Returns 0, or -1 with err. */
int smoe_ckpt_agreed(smoe_ckpt_t *ck, int status, smoe_err_t *err);
/* The newest step recorded globally complete (or -1). */
int64_t smoe_ckpt_last_global(const smoe_ckpt_t *ck);
/* Bytes of the staging copy, the delta base and the encoder's output buffer. */
size_t smoe_ckpt_staging_bytes(const smoe_ckpt_t *ck);
/* The same for regions of state_bytes in all, written in chunks of chunk_bytes. */
size_t smoe_ckpt_staging_for(size_t state_bytes, size_t chunk_bytes);

/* What the caller checks once a checkpoint's regions are restored on a rank,
 * before the ranks agree on it (the placement the step resumes with): 0 with
 * *fingerprint set, which must be equal on every rank, or -1 with err. */
typedef int (*smoe_ckpt_check_fn)(void *ctx, int64_t step, uint64_t *fingerprint,
                                  smoe_err_t *err);

/* Recovery on every rank (collective over comm): want = -1 for the newest step
 * at most `ceiling` that every rank has complete, falling back to older ones
 * when one fails to restore or to pass check (may be NULL), or when the ranks'
 * fingerprints differ (each failure said on stderr with rank, step and key);
 * want >= 0 for exactly that step. On success the regions hold the state and
 * *step its step; what is newer than the step the run goes on from (an
 * abandoned future) is the caller's to delete (smoe_ckpt_discard_after: a
 * gradient-log replay may go on past *step first). *step = -1 with return 0
 * when want = -1 and no checkpoint is complete on every rank (what there is
 * gets deleted). -1 with err otherwise — also when complete ones exist but
 * none restores (nothing is deleted then); shape mismatches are listed. */
int smoe_ckpt_resume(smoe_ckpt_t *ck, smoe_comm_t *comm, int64_t want, int64_t ceiling,
                     smoe_ckpt_check_fn check, void *ctx, int64_t *step, smoe_err_t *err);

/* A fresh run in a store that holds an earlier run's state: deletes every
 * checkpoint and placement record (*removed = checkpoints deleted). */
int smoe_ckpt_start_fresh(smoe_ckpt_t *ck, int *removed, smoe_err_t *err);

/* --- the placement log --------------------------------------------------- */

/* Appends a record (main thread); written in batches every 32 records, before a
 * checkpoint is staged, and at close; synced with the next manifest. When a
 * checkpoint is agreed on, records are pruned so that the log keeps about
 * o.log_bytes: the newest log_bytes / (the last record's size) steps, and
 * always the records of the checkpoints kept (a resume needs them). */
int smoe_ckpt_log(smoe_ckpt_t *ck, const smoe_plog_t *rec, smoe_err_t *err);
/* The record the last smoe_ckpt_log encoded (*n = 0 when it failed), valid
 * until the next call: what a gradient-log record carries (glog.h). */
void smoe_ckpt_log_last(const smoe_ckpt_t *ck, const void **rec, size_t *n);
/* Reads the record of `step` into rec (allocated; smoe_plog_free). Returns 1,
 * 0 if absent, -1 on error: a record that fails its checksum or is not a
 * valid placement (plog.h), or one under another step's key; err names the
 * store, the step and what is wrong. */
int smoe_plog_read(smoe_store_t *s, int64_t step, smoe_plog_t *rec, smoe_err_t *err);
/* Calls fn for every record in step order (for `swiftmoe ckpt plans`); stops
 * at the first bad record with err saying what is wrong. */
int smoe_plog_scan(smoe_store_t *s, int (*fn)(void *ctx, const smoe_plog_t *rec), void *ctx,
                   smoe_err_t *err);
/* Checks every record (for `swiftmoe ckpt verify`): calls bad(ctx, step, msg)
 * for each one that does not decode. Returns the number of records, or -1
 * with err if the store cannot be read. */
int64_t smoe_plog_verify(smoe_store_t *s, void (*bad)(void *ctx, int64_t step, const char *msg),
                         void *ctx, smoe_err_t *err);

/* The loads a first placement is planned from (placement.init_from): spec is
 * "DIR[:STEP]", DIR a run folder, its state folder or a checkpoint.dir (rank
 * 0's store is read, read-only); loads (L, E) <- the mean over its records up
 * to STEP (every record without one). Errors name the spec: no store, an
 * empty log, no record of STEP, another L or E than the run's. */
int smoe_plog_mean_loads(const char *spec, int L, int E, double *loads, smoe_err_t *err);

/* --- copies on another rank (checkpoint.redundancy) ----------------------
 *
 * A rank's checkpoints are unique to it, so a node lost with its disk would
 * take every checkpoint with it. With o.copy, each write also makes a
 * bundle: the checkpoint's keys and values exactly as stored (its chunks,
 * the placement records since the last bundle, its manifest), framed with a
 * magic, version, step and count and closed by a checksum. The engine sends
 * it to another rank (saver.h: rank g keeps rank g-1's), which applies it to
 * a store of its own, <dir>/copy/rank-<g-1>: a store of rank g-1 like the
 * original, with the same keys, durably in the same order (chunks, then the
 * log and manifest in one synced batch). Anything that reads a rank's
 * store (a resume, `ckpt reshard`, `export --step`) reads that copy when the
 * rank's own store is gone. */
#define SMOE_CKPT_COPY_DIR "copy"
/* <dir>/copy */
void smoe_ckpt_copy_dir(const char *dir, char *out, size_t n);
/* The last write's bundle (ownership passes to the caller; 0 when there is
 * none: copies off, or the write failed). Main thread, after the finish. */
int smoe_ckpt_take_bundle(smoe_ckpt_t *ck, void **buf, size_t *n);
/* The handle on the copy this rank keeps of rank `rank`'s checkpoints,
 * <dir>/copy/rank-<rank> (created). It stages nothing: bundles are applied
 * by smoe_ckpt_copy_write (any one thread; it sets the pending step), the
 * result read with smoe_ckpt_copy_status (1 written, -1 failed with err),
 * and it is agreed, pruned and discarded like the rank's own
 * (smoe_ckpt_agreed, smoe_ckpt_start_fresh, smoe_ckpt_discard_after). */
smoe_ckpt_t *smoe_ckpt_open_copy(const char *dir, int rank, const smoe_ckpt_opts_t *o,
                                 smoe_err_t *err);
void smoe_ckpt_copy_write(smoe_ckpt_t *ck, const void *buf, size_t n);
int smoe_ckpt_copy_status(const smoe_ckpt_t *ck, smoe_err_t *err);
/* Applies a bundle to ck's store (checking its checksum and framing first);
 * *step = its step. 0, or -1 with err naming the store. */
int smoe_ckpt_apply(smoe_ckpt_t *ck, const void *buf, size_t n, int64_t *step, smoe_err_t *err);
/* Every key of store s (but its format header) as one bundle (*buf malloc'd):
 * what a lost store is restored from. */
int smoe_ckpt_bundle_store(smoe_store_t *s, void **buf, size_t *n, smoe_err_t *err);
/* Creates <dir>/rank-<rank> from such a bundle. */
int smoe_ckpt_restore_copy(const char *dir, int rank, const void *buf, size_t n, smoe_err_t *err);
/* Rank `rank`'s store in dir read-only, or when it has none, its copy in
 * <dir>/copy (*copy = 1). NULL with err when neither exists. */
smoe_store_t *smoe_ckpt_open_rank(const char *dir, int rank, int *copy, smoe_err_t *err);
/* The next checkpoint written is a full one (a copy that lost its chain). */
void smoe_ckpt_next_full(smoe_ckpt_t *ck);
/* Whether ck's store has the manifest of `step`. */
int smoe_ckpt_holds(smoe_ckpt_t *ck, int64_t step);
/* Deletes every checkpoint, placement record and gradient-log record after
 * `step`. */
int smoe_ckpt_discard_after(smoe_ckpt_t *ck, int64_t step, smoe_err_t *err);

/* --- reading a checkpoint of any rank, a piece at a time ------------------ */

/* Checkpoint `step` of store s (rank `rank`'s: only for messages), its delta
 * chain's manifests read and checked; regions are then read by byte ranges,
 * decoding only the chunks they cover (each through its chain) and keeping
 * the last one: memory is one chunk and its scratch, whatever the state's
 * size. Every chunk's checksum is verified as it is read; errors name the
 * rank, step and key. NULL with err if a manifest is missing or bad. */
typedef struct smoe_ckpt_reader smoe_ckpt_reader_t;
smoe_ckpt_reader_t *smoe_ckpt_reader_open(smoe_store_t *s, int rank, int64_t step,
                                          smoe_err_t *err);
void smoe_ckpt_reader_close(smoe_ckpt_reader_t *r);
/* A shape the run recorded (model.dim, ranks, slots_per_rank, ...), or -1. */
int64_t smoe_ckpt_reader_shape(const smoe_ckpt_reader_t *r, const char *name);
/* Region i of the checkpoint (name, family, bytes, element size; data and
 * ops NULL) into out: 0, or -1 past the last. */
int smoe_ckpt_reader_region(const smoe_ckpt_reader_t *r, int i, smoe_ckpt_region_t *out);
/* The bytes of a region, or -1 when there is no such region. */
int64_t smoe_ckpt_reader_bytes(const smoe_ckpt_reader_t *r, const char *region);
/* Bytes [off, off + n) of the region into out. Returns 0 or -1 with err. */
int smoe_ckpt_reader_read(smoe_ckpt_reader_t *r, const char *region, size_t off, size_t n,
                          void *out, smoe_err_t *err);

/* --- inspection (swiftmoe ckpt ls / verify) ------------------------------- */

/* The manifests of one store in step order (*out malloc'd). A manifest that does
 * not parse is an error naming its key. */
int smoe_ckpt_list(smoe_store_t *s, smoe_ckpt_info_t **out, int *n, smoe_err_t *err);
/* What a store holds: how many checkpoints (manifests), the newest step, the
 * newest step recorded globally complete (-1 when none), and the number of
 * ranks that wrote the newest (0 if unreadable). */
typedef struct {
  int count;
  int64_t newest, newest_global;
  int G;
} smoe_ckpt_survey_t;
int smoe_ckpt_survey(smoe_store_t *s, smoe_ckpt_survey_t *out, smoe_err_t *err);
/* Fails naming the newest checkpoint recorded globally complete whose manifest
 * is missing (deleted or lost), if any. */
int smoe_ckpt_check_markers(smoe_store_t *s, smoe_err_t *err);
/* Re-reads checkpoint `step` of store s with its chain, checking every
 * checksum. Returns 0, or -1 with err naming the rank, step and key. */
int smoe_ckpt_verify(smoe_store_t *s, int64_t step, smoe_err_t *err);

/* Test builds (SMOE_KILL_POINTS defined): SMOE_KILL_AT=NAME[:N[:RANK]] in the
 * environment SIGKILLs the process the Nth time (default 1st) it reaches the
 * point NAME (on that launch rank only, if given); SMOE_KILL_RANDOM=P at any
 * point with probability P. Points: ckpt.chunk (after each chunk written),
 * ckpt.before_manifest, ckpt.after_manifest, glog.before_write (a gradient-log
 * record encoded, not written). Compiled out otherwise, as are three more
 * hooks: SMOE_WRITE_DELAY_MS=N (every checkpoint write N ms slower),
 * SMOE_FAIL_WRITE_AT=STEP (that step's write fails) and SMOE_LOG_DELAY_MS=N
 * (every gradient-log record N ms slower). */
#ifdef SMOE_KILL_POINTS
void smoe_kill_point(const char *name);
#define SMOE_KILL_POINT(name) smoe_kill_point(name)
#else
#define SMOE_KILL_POINT(name) ((void)0)
#endif

#endif
