/* store.c: the per-rank state store on RocksDB's C API (see store.h). */
#define _POSIX_C_SOURCE 200809L
#include "store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* RocksDB needs its "default" family opened too; it sits after ours, unused. */
#define NFAM (SMOE_CF_COUNT + 1)
#define FMT_LEN 16 /* magic (8) + version (4) + rank (4) */

static const char *const FAMILY[NFAM] = {"meta",  "shard", "dense",  "placement",
                                         "data",  "grads", "default"};

struct smoe_store {
  rocksdb_t *db;
  rocksdb_column_family_handle_t *cf[NFAM];
  rocksdb_readoptions_t *ro;
  rocksdb_writeoptions_t *wo, *wo_sync, *wo_nowal;
  int rank, readonly;
  char path[SMOE_PATHLEN];
};

struct smoe_batch {
  smoe_store_t *s;
  rocksdb_writebatch_t *wb;
};

const char *smoe_cf_name(smoe_cf_t cf) {
  return (unsigned)cf < SMOE_CF_COUNT ? FAMILY[cf] : "?";
}

const char *smoe_store_path(const smoe_store_t *s) {
  return s->path;
}

int smoe_store_rank(const smoe_store_t *s) {
  return s->rank;
}

/* --- error messages ------------------------------------------------------ */

/* Writes key as a quoted printable string into out (escaping bytes outside ASCII
 * 0x20-0x7e as \xNN), at most 48 key bytes, then how many were left out. */
#define KEYSHOW 48
static void show_key(char *out, size_t n, const void *key, size_t klen) {
  const unsigned char *k = key;
  size_t o = 0, m = klen < KEYSHOW ? klen : KEYSHOW;
  out[o++] = '\'';
  for (size_t i = 0; i < m && o + 6 < n; i++) {
    if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\'' && k[i] != '\\')
      out[o++] = (char)k[i];
    else
      o += (size_t)snprintf(out + o, n - o, "\\x%02x", k[i]);
  }
  out[o++] = '\'';
  out[o] = '\0';
  if (klen > m) snprintf(out + o, n - o, " (+%zu bytes)", klen - m);
}

/* If RocksDB reported an error in e: frees it, formats err and returns -1; else 0. */
static int rdb_fail(smoe_err_t *err, char *e, const smoe_store_t *s, const char *what, smoe_cf_t cf,
                    const void *key, size_t klen) {
  if (!e) return 0;
  char ks[KEYSHOW * 4 + 32] = "";
  if (key) show_key(ks, sizeof ks, key, klen);
  smoe_fail(err, "state store %s: %s %s%s%s: %s", s->path, what, smoe_cf_name(cf),
            key ? " key " : "", ks, e);
  rocksdb_free(e);
  return -1;
}

/* --- open / close -------------------------------------------------------- */

/* Options for family i; compress: use LZ4 where we want RocksDB's compression. */
static rocksdb_options_t *family_options(int i, int compress) {
  rocksdb_options_t *o = rocksdb_options_create();
  int own = (i == SMOE_CF_META || i == SMOE_CF_PLACEMENT || i == SMOE_CF_DATA);
  rocksdb_options_set_compression(
      o, own && compress ? rocksdb_lz4_compression : rocksdb_no_compression);
  if (i == SMOE_CF_SHARD || i == SMOE_CF_DENSE || i == SMOE_CF_GRADS) { /* big chunks: kept out of compactions */
    rocksdb_options_set_enable_blob_files(o, 1);
    rocksdb_options_set_min_blob_size(o, SMOE_STORE_BLOB_MIN);
    rocksdb_options_set_blob_compression_type(o, rocksdb_no_compression);
    rocksdb_options_set_enable_blob_gc(o, 1);
  }
  return o;
}

/* Opens the database at s->path with all families; NULL with *e set on failure.
 * Read-only, a family the database does not have yet (a store written before
 * it existed: `grads`) is left out and its handle NULL: it reads as empty. */
static rocksdb_t *open_families(smoe_store_t *s, int compress, char **e) {
  rocksdb_options_t *dbo = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(dbo, 1);
  rocksdb_options_set_create_missing_column_families(dbo, 1);
  rocksdb_options_set_keep_log_file_num(dbo, 4); /* RocksDB's own LOG: at most 4 x 1 MiB old ones */
  rocksdb_options_set_max_log_file_size(dbo, 1 << 20);
  rocksdb_options_t *fo[NFAM];
  const char *name[NFAM];
  int which[NFAM], n = 0;
  size_t have = 0;
  char **names = NULL, *le = NULL;
  if (s->readonly) names = rocksdb_list_column_families(dbo, s->path, &have, &le);
  for (int i = 0; i < NFAM; i++) {
    int found = !s->readonly || le != NULL;
    for (size_t j = 0; !found && j < have; j++) found = strcmp(names[j], FAMILY[i]) == 0;
    if (!found) continue;
    fo[n] = family_options(i, compress), name[n] = FAMILY[i], which[n++] = i;
  }
  if (names) rocksdb_list_column_families_destroy(names, have);
  rocksdb_free(le); /* (the open below says what is wrong) */
  rocksdb_column_family_handle_t *h[NFAM] = {NULL};
  rocksdb_t *db =
      s->readonly
          ? rocksdb_open_for_read_only_column_families(
                dbo, s->path, n, name, (const rocksdb_options_t *const *)fo, h, 0, e)
          : rocksdb_open_column_families(dbo, s->path, n, name,
                                         (const rocksdb_options_t *const *)fo, h, e);
  for (int k = 0; k < n; k++) s->cf[which[k]] = h[k], rocksdb_options_destroy(fo[k]);
  rocksdb_options_destroy(dbo);
  return db;
}

/* An existing database must have our meta family and no family we do not know. */
static int check_families(smoe_store_t *s, smoe_err_t *err) {
  rocksdb_options_t *o = rocksdb_options_create();
  char *e = NULL;
  size_t n = 0;
  char **names = rocksdb_list_column_families(o, s->path, &n, &e);
  rocksdb_options_destroy(o);
  if (e) {
    smoe_fail(err, "state store %s: cannot list column families: %s", s->path, e);
    rocksdb_free(e);
    return -1;
  }
  int rc = 0, meta = 0;
  for (size_t j = 0; j < n && rc == 0; j++) {
    int known = 0;
    for (int i = 0; i < NFAM; i++) known |= strcmp(names[j], FAMILY[i]) == 0;
    meta |= strcmp(names[j], FAMILY[SMOE_CF_META]) == 0;
    if (!known)
      rc = smoe_fail(err, "state store %s: not a swiftmoe state store (unknown column family '%s')",
                     s->path, names[j]);
  }
  if (rc == 0 && !meta)
    rc = smoe_fail(err, "state store %s: not a swiftmoe state store (no 'meta' column family)",
                   s->path);
  rocksdb_list_column_families_destroy(names, n);
  return rc;
}

static void put_u32le(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32le(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Writes the format header (fresh database) or checks it (existing one). */
static int format_header(smoe_store_t *s, int fresh, smoe_err_t *err) {
  const char *key = SMOE_STORE_FORMAT_KEY;
  size_t klen = strlen(key);
  if (fresh) {
    unsigned char h[FMT_LEN];
    memcpy(h, SMOE_STORE_MAGIC, 8);
    put_u32le(h + 8, SMOE_STORE_VERSION);
    put_u32le(h + 12, (uint32_t)s->rank);
    char *e = NULL;
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[SMOE_CF_META], key, klen, (const char *)h, FMT_LEN, &e);
    return rdb_fail(err, e, s, "writing the format header to", SMOE_CF_META, key, klen);
  }
  void *v = NULL;
  size_t vlen = 0;
  int found = smoe_store_get(s, SMOE_CF_META, key, klen, &v, &vlen, err);
  if (found < 0) return -1;
  const unsigned char *h = v;
  int rc = 0;
  if (!found)
    rc = smoe_fail(err,
                   "state store %s: no format header (meta key '%s'): not a swiftmoe state "
                   "store, or its creation was interrupted; remove the directory to start over",
                   s->path, key);
  else if (vlen != FMT_LEN || memcmp(h, SMOE_STORE_MAGIC, 8) != 0)
    rc = smoe_fail(err,
                   "state store %s: bad magic in the format header (meta key '%s', %zu bytes): "
                   "not a swiftmoe state store",
                   s->path, key, vlen);
  else if (get_u32le(h + 8) > SMOE_STORE_VERSION)
    rc = smoe_fail(err,
                   "state store %s: format version %u is newer than this build's %u; use a "
                   "newer swiftmoe",
                   s->path, (unsigned)get_u32le(h + 8), SMOE_STORE_VERSION);
  else if (get_u32le(h + 8) == 0)
    rc = smoe_fail(err, "state store %s: format version 0 is invalid", s->path);
  else if (get_u32le(h + 12) != (uint32_t)s->rank)
    rc = smoe_fail(err, "state store %s: belongs to rank %u, opened as rank %d", s->path,
                   (unsigned)get_u32le(h + 12), s->rank);
  free(v);
  return rc;
}

/* mkdir that accepts an existing directory and names a non-directory. */
static int make_dir(const char *path, const char *what, smoe_err_t *err) {
  if (mkdir(path, 0777) != 0 && errno != EEXIST)
    return smoe_fail(err, "state store: cannot create %s %s: %s", what, path, strerror(errno));
  struct stat st;
  if (stat(path, &st) != 0)
    return smoe_fail(err, "state store: cannot stat %s %s: %s", what, path, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return smoe_fail(err, "state store: %s %s exists and is not a directory", what, path);
  return 0;
}

/* Removes folder `path` and the files in it (RocksDB's are flat); nothing
 * there is fine. */
static int remove_flat_dir(const char *path, smoe_err_t *err) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? 0 : smoe_fail(err, "state store: cannot stat %s: %s", path,
                                             strerror(errno));
  if (!S_ISDIR(st.st_mode)) /* a link or a file is not ours to empty: never follow it */
    return smoe_fail(err, "state store: %s is not a folder swiftmoe made; remove it", path);
  DIR *d = opendir(path);
  if (!d) return errno == ENOENT ? 0 : smoe_fail(err, "state store: cannot open %s: %s", path,
                                                   strerror(errno));
  struct dirent *f;
  char file[SMOE_PATHLEN + 300];
  int rc = 0;
  while (rc == 0 && (f = readdir(d)) != NULL) {
    if (strcmp(f->d_name, ".") == 0 || strcmp(f->d_name, "..") == 0) continue;
    snprintf(file, sizeof file, "%s/%s", path, f->d_name);
    if (unlink(file) != 0)
      rc = smoe_fail(err, "state store: cannot remove %s: %s", file, strerror(errno));
  }
  closedir(d);
  if (rc == 0 && rmdir(path) != 0)
    rc = smoe_fail(err, "state store: cannot remove %s: %s", path, strerror(errno));
  return rc;
}

/* Opens the database at s->path with all families, without LZ4 where this
 * RocksDB lacks it; 0, or -1 with err. */
static int open_db(smoe_store_t *s, smoe_err_t *err) {
  char *e = NULL;
  s->db = open_families(s, 1, &e);
  if (!s->db && e && strstr(e, "not linked")) { /* this RocksDB lacks LZ4: go without */
    rocksdb_free(e);
    e = NULL;
    s->db = open_families(s, 0, &e);
  }
  if (s->db) return 0;
  smoe_fail(err, "state store %s: cannot open: %s", s->path, e ? e : "(no message)");
  rocksdb_free(e);
  return -1;
}

/* The store's families and synced format header, in the database at t->path
 * (t->rank set); 0, or -1 with err. */
static int build_store(smoe_store_t *t, smoe_err_t *err) {
  if (open_db(t, err) != 0) return -1;
  t->wo_sync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(t->wo_sync, 1);
  int rc = format_header(t, 1, err);
  for (int i = 0; i < NFAM; i++)
    if (t->cf[i]) rocksdb_column_family_handle_destroy(t->cf[i]), t->cf[i] = NULL;
  rocksdb_close(t->db);
  rocksdb_writeoptions_destroy(t->wo_sync);
  t->db = NULL, t->wo_sync = NULL;
  return rc;
}

/* A new store is made whole in <path>.creating (its families and its format
 * header, synced), then renamed into place: a process killed while creating
 * it leaves that folder only, which the next creation removes and redoes,
 * never a store that cannot be opened. Where <path> is a link or a mount
 * point the user made (the state on another disk), it is built in place
 * instead, as that cannot be renamed over: there a creation killed half way
 * still needs the folder emptied by hand. */
static int create_store(const smoe_store_t *s, smoe_err_t *err) {
  smoe_store_t t;
  memset(&t, 0, sizeof t);
  t.rank = s->rank;
  struct stat st, up;
  if (stat(s->path, &st) == 0 && !S_ISDIR(st.st_mode))
    return smoe_fail(err, "state store: database directory %s exists and is not a directory",
                     s->path);
  char dir[SMOE_PATHLEN];
  snprintf(dir, sizeof dir, "%s", s->path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  const char *parent = slash ? dir : ".";
  if (lstat(s->path, &st) == 0 &&
      (S_ISLNK(st.st_mode) || (stat(parent, &up) == 0 && up.st_dev != st.st_dev))) {
    snprintf(t.path, sizeof t.path, "%s", s->path);
    return build_store(&t, err);
  }
  int n = snprintf(t.path, sizeof t.path, "%s.creating", s->path);
  if (n < 0 || (size_t)n >= sizeof t.path)
    return smoe_fail(err, "state store: path %s.creating is too long", s->path);
  if (remove_flat_dir(t.path, err) != 0 || make_dir(t.path, "database directory", err) != 0)
    return -1;
  if (build_store(&t, err) != 0) return -1;
  if (rename(t.path, s->path) != 0) {
    smoe_err_t ignored;
    int e = errno;
    remove_flat_dir(t.path, &ignored);
    return smoe_fail(err, "state store %s: cannot move the new store %s into place: %s%s",
                     s->path, t.path, strerror(e),
                     e == ENOTEMPTY || e == EEXIST
                         ? " (a folder there that holds no database: remove it to start over)"
                         : "");
  }
  int fd = open(parent, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) fsync(fd), close(fd); /* the rename, durable */
  return 0;
}

static smoe_store_t *open_store(const char *dir, int rank, int readonly, smoe_err_t *err) {
  if (rank < 0) {
    smoe_fail(err, "state store: rank %d is negative", rank);
    return NULL;
  }
  smoe_store_t *s = xcalloc(1, sizeof *s);
  s->rank = rank;
  s->readonly = readonly;
  int n = snprintf(s->path, sizeof s->path, "%s/rank-%d", dir, rank);
  if (n < 0 || (size_t)n >= sizeof s->path) {
    smoe_fail(err, "state store: path %s/rank-%d is longer than %d bytes", dir, rank,
              SMOE_PATHLEN - 1);
    free(s);
    return NULL;
  }
  if (!readonly && make_dir(dir, "state directory", err) != 0) {
    free(s);
    return NULL;
  }
  /* A database exists when its CURRENT file does; then check before touching it. */
  char current[SMOE_PATHLEN + 16];
  snprintf(current, sizeof current, "%s/CURRENT", s->path);
  struct stat st;
  int fresh = stat(current, &st) != 0;
  if (fresh && readonly) {
    smoe_fail(err, "state store %s: no database here (no CURRENT file)", s->path);
    free(s);
    return NULL;
  }
  if ((fresh && create_store(s, err) != 0) || check_families(s, err) != 0 ||
      open_db(s, err) != 0) {
    free(s);
    return NULL;
  }
  s->ro = rocksdb_readoptions_create();
  s->wo = rocksdb_writeoptions_create();
  s->wo_sync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(s->wo_sync, 1);
  s->wo_nowal = rocksdb_writeoptions_create();
  rocksdb_writeoptions_disable_WAL(s->wo_nowal, 1);
  if (format_header(s, 0, err) != 0) {
    smoe_store_close(s);
    return NULL;
  }
  return s;
}

int smoe_store_exists(const char *dir, int rank) {
  char current[SMOE_PATHLEN + 32];
  snprintf(current, sizeof current, "%s/rank-%d/CURRENT", dir, rank);
  struct stat st;
  return stat(current, &st) == 0;
}

smoe_store_t *smoe_store_open(const char *dir, int rank, smoe_err_t *err) {
  return open_store(dir, rank, 0, err);
}

smoe_store_t *smoe_store_open_readonly(const char *dir, int rank, smoe_err_t *err) {
  return open_store(dir, rank, 1, err);
}

void smoe_store_close(smoe_store_t *s) {
  if (!s) return;
  for (int i = 0; i < NFAM; i++)
    if (s->cf[i]) rocksdb_column_family_handle_destroy(s->cf[i]);
  if (s->db) rocksdb_close(s->db);
  if (s->ro) rocksdb_readoptions_destroy(s->ro);
  if (s->wo) rocksdb_writeoptions_destroy(s->wo);
  if (s->wo_sync) rocksdb_writeoptions_destroy(s->wo_sync);
  if (s->wo_nowal) rocksdb_writeoptions_destroy(s->wo_nowal);
  free(s);
}

/* --- single keys --------------------------------------------------------- */

int smoe_store_put(smoe_store_t *s, smoe_cf_t cf, const void *key, size_t klen, const void *val,
                   size_t vlen, smoe_err_t *err) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  char *e = NULL;
  rocksdb_put_cf(s->db, s->wo, s->cf[cf], key, klen, val, vlen, &e);
  return rdb_fail(err, e, s, "put to", cf, key, klen);
}

int smoe_store_get(smoe_store_t *s, smoe_cf_t cf, const void *key, size_t klen, void **val,
                   size_t *vlen, smoe_err_t *err) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  *val = NULL;
  *vlen = 0;
  char *e = NULL;
  if (!s->cf[cf]) return 0; /* a family this (read-only, older) store does not have */
  rocksdb_pinnableslice_t *p = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[cf], key, klen, &e);
  if (rdb_fail(err, e, s, "get from", cf, key, klen) != 0) {
    rocksdb_pinnableslice_destroy(p);
    return -1;
  }
  if (!p) return 0;
  size_t n = 0;
  const char *v = rocksdb_pinnableslice_value(p, &n);
  *val = xmalloc(n);
  if (n) memcpy(*val, v, n);
  *vlen = n;
  rocksdb_pinnableslice_destroy(p);
  return 1;
}

int smoe_store_delete(smoe_store_t *s, smoe_cf_t cf, const void *key, size_t klen,
                      smoe_err_t *err) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  char *e = NULL;
  rocksdb_delete_cf(s->db, s->wo, s->cf[cf], key, klen, &e);
  return rdb_fail(err, e, s, "delete from", cf, key, klen);
}

int smoe_store_delete_range(smoe_store_t *s, smoe_cf_t cf, const void *begin, size_t blen,
                            const void *end, size_t elen, smoe_err_t *err) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  char *e = NULL;
  rocksdb_delete_range_cf(s->db, s->wo, s->cf[cf], begin, blen, end, elen, &e);
  return rdb_fail(err, e, s, "delete range (from the begin key) in", cf, begin, blen);
}

void smoe_store_compact(smoe_store_t *s, smoe_cf_t cf, const void *begin, size_t blen,
                        const void *end, size_t elen) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  rocksdb_compact_range_cf(s->db, s->cf[cf], begin, blen, end, elen);
}

int smoe_store_flush(smoe_store_t *s, smoe_err_t *err) {
  char *e = NULL;
  rocksdb_flush_wal(s->db, 1, &e);
  if (!e) return 0;
  smoe_fail(err, "state store %s: syncing the write-ahead log: %s", s->path, e);
  rocksdb_free(e);
  return -1;
}

int smoe_store_persist(smoe_store_t *s, smoe_err_t *err) {
  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  int rc = 0;
  for (int i = 0; i < SMOE_CF_COUNT && rc == 0; i++) {
    char *e = NULL;
    rocksdb_flush_cf(s->db, fo, s->cf[i], &e);
    rc = rdb_fail(err, e, s, "flushing the memtable of", (smoe_cf_t)i, NULL, 0);
  }
  rocksdb_flushoptions_destroy(fo);
  return rc;
}

/* --- scan ---------------------------------------------------------------- */

/* Keys from `seek` (empty: the first) below `bound` (blen 0: no bound) that
 * start with prefix (plen 0: any), in order, to fn. */
static int scan(smoe_store_t *s, smoe_cf_t cf, const void *seek, size_t slen, const void *bound,
                size_t blen, const void *prefix, size_t plen, smoe_store_scan_fn fn, void *ctx,
                smoe_err_t *err) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  if (!s->cf[cf]) return 0; /* a family this (read-only, older) store does not have */
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  if (blen > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)bound, blen);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[cf]);
  int rc = 0;
  if (slen)
    rocksdb_iter_seek(it, seek, slen);
  else
    rocksdb_iter_seek_to_first(it);
  for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl = 0, vl = 0;
    const char *k = rocksdb_iter_key(it, &kl);
    if (plen && (kl < plen || memcmp(k, prefix, plen) != 0)) break;
    const char *v = rocksdb_iter_value(it, &vl);
    int r = fn(ctx, k, kl, v, vl);
    if (r > 0) break;
    if (r < 0) {
      char ks[KEYSHOW * 4 + 32];
      show_key(ks, sizeof ks, k, kl);
      rc = smoe_fail(err, "state store %s: scan of %s stopped by its callback at key %s", s->path,
                     smoe_cf_name(cf), ks);
      break;
    }
  }
  if (rc == 0) {
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rc = rdb_fail(err, e, s, "scan (from the key) of", cf, seek, slen);
  }
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  return rc;
}

int smoe_store_scan(smoe_store_t *s, smoe_cf_t cf, const void *prefix, size_t plen,
                    smoe_store_scan_fn fn, void *ctx, smoe_err_t *err) {
  /* Upper bound: the prefix with trailing 0xff bytes dropped and its last byte + 1
   * (none if the prefix is empty or all 0xff). */
  unsigned char *bound = NULL;
  size_t blen = plen;
  const unsigned char *pre = prefix;
  while (blen > 0 && pre[blen - 1] == 0xff) blen--;
  if (blen > 0) {
    bound = xmalloc(blen);
    memcpy(bound, pre, blen);
    bound[blen - 1]++;
  }
  int rc = scan(s, cf, prefix, plen, bound, blen, prefix, plen, fn, ctx, err);
  free(bound);
  return rc;
}

int smoe_store_scan_range(smoe_store_t *s, smoe_cf_t cf, const void *begin, size_t blen,
                          const void *end, size_t elen, smoe_store_scan_fn fn, void *ctx,
                          smoe_err_t *err) {
  return scan(s, cf, begin, blen, end, elen, NULL, 0, fn, ctx, err);
}

/* --- batches ------------------------------------------------------------- */

smoe_batch_t *smoe_batch_new(smoe_store_t *s) {
  smoe_batch_t *b = xmalloc(sizeof *b);
  b->s = s;
  b->wb = rocksdb_writebatch_create();
  return b;
}

void smoe_batch_put(smoe_batch_t *b, smoe_cf_t cf, const void *key, size_t klen, const void *val,
                    size_t vlen) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  rocksdb_writebatch_put_cf(b->wb, b->s->cf[cf], key, klen, val, vlen);
}

void smoe_batch_delete(smoe_batch_t *b, smoe_cf_t cf, const void *key, size_t klen) {
  assert((unsigned)cf < SMOE_CF_COUNT);
  rocksdb_writebatch_delete_cf(b->wb, b->s->cf[cf], key, klen);
}

size_t smoe_batch_count(smoe_batch_t *b) {
  return (size_t)rocksdb_writebatch_count(b->wb);
}

void smoe_batch_clear(smoe_batch_t *b) {
  rocksdb_writebatch_clear(b->wb);
}

void smoe_batch_free(smoe_batch_t *b) {
  if (!b) return;
  rocksdb_writebatch_destroy(b->wb);
  free(b);
}

int smoe_store_write(smoe_store_t *s, smoe_batch_t *b, int mode, smoe_err_t *err) {
  assert(b->s == s);
  char *e = NULL;
  rocksdb_write(s->db,
                mode == SMOE_WRITE_SYNC     ? s->wo_sync
                : mode == SMOE_WRITE_NO_WAL ? s->wo_nowal
                                            : s->wo,
                b->wb, &e);
  if (!e) return 0;
  smoe_fail(err, "state store %s: writing a batch of %zu operations%s: %s", s->path,
            smoe_batch_count(b),
            mode == SMOE_WRITE_SYNC     ? " (synced)"
            : mode == SMOE_WRITE_NO_WAL ? " (unlogged)"
                                        : "",
            e);
  rocksdb_free(e);
  return -1;
}
