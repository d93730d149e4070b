/* store.h: the per-rank state store, one RocksDB per rank under <dir>/rank-<g>.
 *
 * Column families (see DESIGN.md, "The state store"):
 *   meta       manifests and run metadata; holds the format header (below)
 *   shard      optimizer-shard chunks   (values already zstd-compressed by our codec:
 *   dense      dense parameters + state  RocksDB compression off; both use BlobDB)
 *   placement  the placement log        (RocksDB LZ4 when linked, else none)
 *   data       data/RNG positions       (likewise)
 *   grads      the gradient log's chunks (ckpt/glog.h; zstd by our codec, BlobDB)
 *
 * Format header: the meta key SMOE_STORE_FORMAT_KEY holds 16 bytes, the magic
 * "SMOESTOR", the format version (uint32 little endian) and the rank (uint32 LE).
 * It is written (synced) when the database is created and checked at every open: a
 * database from another program, of a newer format, or of another rank is refused.
 *
 * Every function that can fail returns -1 (or NULL) and writes a message to err
 * (may be NULL) naming the database path, the column family, the key involved and
 * RocksDB's own message. No global state: handles may be used from several threads
 * at once (RocksDB is thread-safe), except a batch, which belongs to one thread. */
#ifndef SMOE_STORE_H
#define SMOE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define SMOE_STORE_MAGIC "SMOESTOR" /* 8 bytes, no terminator stored */
#define SMOE_STORE_VERSION 1u
#define SMOE_STORE_FORMAT_KEY "smoe.format" /* reserved key in the meta family */
#define SMOE_STORE_BLOB_MIN (64u * 1024u)   /* shard values this large go to blob files */

typedef enum {
  SMOE_CF_META = 0,
  SMOE_CF_SHARD,
  SMOE_CF_DENSE,
  SMOE_CF_PLACEMENT,
  SMOE_CF_DATA,
  SMOE_CF_GRADS,
  SMOE_CF_COUNT
} smoe_cf_t;

typedef struct smoe_store smoe_store_t;
typedef struct smoe_batch smoe_batch_t;

/* The family's name ("meta", "shard", ...); static storage. */
const char *smoe_cf_name(smoe_cf_t cf);

/* Opens <dir>/rank-<rank>, creating dir (one level) and the database with its column
 * families if missing. Returns a handle the caller owns (release with
 * smoe_store_close), or NULL with err set. */
smoe_store_t *smoe_store_open(const char *dir, int rank, smoe_err_t *err);

/* Whether <dir>/rank-<rank> holds a database (its CURRENT file exists);
 * creates nothing. */
int smoe_store_exists(const char *dir, int rank);

/* Opens an existing <dir>/rank-<rank> read-only (for inspection while a job may be
 * running: no lock is taken, writes fail). NULL with err set if it is missing. A
 * family the store does not have (one written before `grads` existed) reads as
 * empty; a read-write open creates it. */
smoe_store_t *smoe_store_open_readonly(const char *dir, int rank, smoe_err_t *err);

/* Closes the database and frees the handle (NULL is a no-op). Unsynced writes not yet
 * flushed may be lost only on a machine crash, not on a process exit. */
void smoe_store_close(smoe_store_t *s);

/* The database directory <dir>/rank-<g>; owned by s, valid until close. */
const char *smoe_store_path(const smoe_store_t *s);
/* The rank the store belongs to (checked against its format header at open). */
int smoe_store_rank(const smoe_store_t *s);

/* Writes one value (unsynced: durable after smoe_store_flush or a synced write).
 * key and val are copied; the caller keeps them. */
int smoe_store_put(smoe_store_t *s, smoe_cf_t cf, const void *key, size_t klen, const void *val,
                   size_t vlen, smoe_err_t *err);

/* Reads one value. Returns 1 if found, with *val a malloc'd copy (the caller frees it;
 * never NULL, even for an empty value) and *vlen its length; 0 if not found (*val =
 * NULL, *vlen = 0); -1 on error. */
int smoe_store_get(smoe_store_t *s, smoe_cf_t cf, const void *key, size_t klen, void **val,
                   size_t *vlen, smoe_err_t *err);

/* Deletes one key (absent is not an error), unsynced. */
int smoe_store_delete(smoe_store_t *s, smoe_cf_t cf, const void *key, size_t klen, smoe_err_t *err);

/* Deletes every key k with begin <= k < end (bytewise), unsynced: for pruning old
 * checkpoint chains and placement-log history. */
int smoe_store_delete_range(smoe_store_t *s, smoe_cf_t cf, const void *begin, size_t blen,
                            const void *end, size_t elen, smoe_err_t *err);

/* Calls fn for every key of cf that starts with prefix (plen 0: every key), in
 * bytewise key order. k and v are owned by the store and valid only during the call.
 * fn returns 0 to go on, > 0 to stop (scan returns 0), < 0 to abort (scan returns -1
 * with a message naming the key). Returns 0, or -1 on error. */
typedef int (*smoe_store_scan_fn)(void *ctx, const void *k, size_t klen, const void *v,
                                  size_t vlen);
int smoe_store_scan(smoe_store_t *s, smoe_cf_t cf, const void *prefix, size_t plen,
                    smoe_store_scan_fn fn, void *ctx, smoe_err_t *err);

/* The same for the keys begin <= k < end (elen 0: no end), in order. */
int smoe_store_scan_range(smoe_store_t *s, smoe_cf_t cf, const void *begin, size_t blen,
                          const void *end, size_t elen, smoe_store_scan_fn fn, void *ctx,
                          smoe_err_t *err);

/* Compacts the keys begin <= k < end of cf now (waiting): deleted values in
 * that range leave the table files, and blob files that only they used are
 * removed. Pruning calls it, so that disk use follows the deletes instead of
 * waiting for RocksDB's own compactions. */
void smoe_store_compact(smoe_store_t *s, smoe_cf_t cf, const void *begin, size_t blen,
                        const void *end, size_t elen);

/* Syncs the write-ahead log: every write before it is durable afterwards. */
int smoe_store_flush(smoe_store_t *s, smoe_err_t *err);

/* Flushes every family's memtable into table and blob files (synced) and waits:
 * afterwards writes made with SMOE_WRITE_NO_WAL are durable too. */
int smoe_store_persist(smoe_store_t *s, smoe_err_t *err);

/* A write batch, applied atomically by smoe_store_write: all of it or none of it is
 * visible, after a crash too. Bound to the store it was made for (which must outlive
 * it); owned by the caller (smoe_batch_free). Keys and values are copied at once. */
smoe_batch_t *smoe_batch_new(smoe_store_t *s);
void smoe_batch_put(smoe_batch_t *b, smoe_cf_t cf, const void *key, size_t klen, const void *val,
                    size_t vlen);
void smoe_batch_delete(smoe_batch_t *b, smoe_cf_t cf, const void *key, size_t klen);
size_t smoe_batch_count(smoe_batch_t *b); /* operations in the batch */
void smoe_batch_clear(smoe_batch_t *b);   /* empties it for reuse */
void smoe_batch_free(smoe_batch_t *b);    /* NULL is a no-op */

/* Write modes. SYNC: the batch (and every logged write before it) is durable when
 * smoe_store_write returns: a checkpoint's manifest goes last, in one synced batch.
 * NO_WAL: the batch skips the write-ahead log (bulk chunk data is then written once,
 * by smoe_store_persist, not twice); it is lost on a crash before the next persist. */
enum { SMOE_WRITE_PLAIN = 0, SMOE_WRITE_SYNC = 1, SMOE_WRITE_NO_WAL = 2 };

/* Applies b atomically in the given mode. b is left unchanged (clear or free it). */
int smoe_store_write(smoe_store_t *s, smoe_batch_t *b, int mode, smoe_err_t *err);

#endif
