/* test_store.c: the per-rank RocksDB state store (storage/store.h).
 *
 * Every test works in its own mkdtemp directory under /tmp, removed at the end. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* cmocka.h needs these four first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <rocksdb/c.h>

#include "store.h"

/* --- helpers ------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st, (void)flag, (void)f;
  return remove(p);
}

static int setup_dir(void **state) {
  char *d = malloc(64);
  if (!d) return -1;
  strcpy(d, "/tmp/smoe_test_store_XXXXXX");
  if (!mkdtemp(d)) {
    free(d);
    return -1;
  }
  *state = d;
  return 0;
}

static int teardown_dir(void **state) {
  char *d = *state;
  int rc = nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(d);
  return rc;
}

static smoe_store_t *open_ok(const char *dir, int rank) {
  smoe_err_t err = {{0}};
  smoe_store_t *s = smoe_store_open(dir, rank, &err);
  if (!s) print_error("open failed: %s\n", err.msg);
  assert_non_null(s);
  return s;
}

static void put_str(smoe_store_t *s, smoe_cf_t cf, const char *k, const char *v) {
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_put(s, cf, k, strlen(k), v, strlen(v), &err), 0);
}

/* Asserts that k holds exactly v in cf. */
static void expect_str(smoe_store_t *s, smoe_cf_t cf, const char *k, const char *v) {
  smoe_err_t err = {{0}};
  void *got = NULL;
  size_t n = 0;
  assert_int_equal(smoe_store_get(s, cf, k, strlen(k), &got, &n, &err), 1);
  assert_int_equal(n, strlen(v));
  assert_memory_equal(got, v, n);
  free(got);
}

static void expect_missing(smoe_store_t *s, smoe_cf_t cf, const char *k) {
  smoe_err_t err = {{0}};
  void *got = (void *)1;
  size_t n = 7;
  assert_int_equal(smoe_store_get(s, cf, k, strlen(k), &got, &n, &err), 0);
  assert_null(got);
  assert_int_equal(n, 0);
}

static bool file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* Writes a format header by hand through the API (magic, version, rank). */
static void write_header(smoe_store_t *s, const char magic[8], uint32_t version, uint32_t rank) {
  unsigned char h[16];
  memcpy(h, magic, 8);
  for (int i = 0; i < 4; i++) {
    h[8 + i] = (unsigned char)(version >> (8 * i));
    h[12 + i] = (unsigned char)(rank >> (8 * i));
  }
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_put(s, SMOE_CF_META, SMOE_STORE_FORMAT_KEY,
                                  strlen(SMOE_STORE_FORMAT_KEY), h, sizeof h, &err),
                   0);
}

/* Opens dir/rank-<rank> expecting failure; returns the message in err. */
static void open_fails(const char *dir, int rank, smoe_err_t *err) {
  memset(err, 0, sizeof *err);
  smoe_store_t *s = smoe_store_open(dir, rank, err);
  assert_null(s);
  assert_true(strlen(err->msg) > 0);
}

/* --- tests --------------------------------------------------------------- */

static void test_open_creates(void **state) {
  const char *dir = *state;
  smoe_store_t *s = open_ok(dir, 3);
  char p[256];
  snprintf(p, sizeof p, "%s/rank-3", dir);
  assert_string_equal(smoe_store_path(s), p);
  snprintf(p, sizeof p, "%s/rank-3/CURRENT", dir);
  assert_true(file_exists(p));
  smoe_store_close(s);
  smoe_store_close(NULL);
  /* a state dir that does not exist yet is created (one level) */
  snprintf(p, sizeof p, "%s/state", dir);
  s = open_ok(p, 0);
  smoe_store_close(s);
  smoe_err_t err;
  open_fails(dir, -1, &err);
  assert_non_null(strstr(err.msg, "rank -1"));
}

static void test_put_get_each_family(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  char v[32];
  for (int cf = 0; cf < SMOE_CF_COUNT; cf++) {
    snprintf(v, sizeof v, "value in %s", smoe_cf_name((smoe_cf_t)cf));
    put_str(s, (smoe_cf_t)cf, "k", v);
  }
  for (int cf = 0; cf < SMOE_CF_COUNT; cf++) {
    snprintf(v, sizeof v, "value in %s", smoe_cf_name((smoe_cf_t)cf));
    expect_str(s, (smoe_cf_t)cf, "k", v); /* same key, families independent */
  }
  put_str(s, SMOE_CF_DENSE, "k", "overwritten");
  expect_str(s, SMOE_CF_DENSE, "k", "overwritten");
  expect_str(s, SMOE_CF_SHARD, "k", "value in shard");
  /* binary keys and values with zero bytes; an empty value is found, non-NULL */
  smoe_err_t err = {{0}};
  const unsigned char bk[] = {0, 1, 0xff, 0}, bv[] = {0, 0, 9};
  assert_int_equal(smoe_store_put(s, SMOE_CF_DATA, bk, sizeof bk, bv, sizeof bv, &err), 0);
  assert_int_equal(smoe_store_put(s, SMOE_CF_DATA, "empty", 5, "", 0, &err), 0);
  void *got = NULL;
  size_t n = 0;
  assert_int_equal(smoe_store_get(s, SMOE_CF_DATA, bk, sizeof bk, &got, &n, &err), 1);
  assert_int_equal(n, sizeof bv);
  assert_memory_equal(got, bv, n);
  free(got);
  assert_int_equal(smoe_store_get(s, SMOE_CF_DATA, "empty", 5, &got, &n, &err), 1);
  assert_non_null(got);
  assert_int_equal(n, 0);
  free(got);
  smoe_store_close(s);
}

static void test_get_missing(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  expect_missing(s, SMOE_CF_SHARD, "nothing");
  put_str(s, SMOE_CF_SHARD, "something", "x");
  expect_missing(s, SMOE_CF_DENSE, "something"); /* other family */
  smoe_store_close(s);
}

static void test_reopen_persists(void **state) {
  smoe_store_t *s = open_ok(*state, 1);
  put_str(s, SMOE_CF_PLACEMENT, "step/00000001", "plan one");
  put_str(s, SMOE_CF_META, "run", "config digest");
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_flush(s, &err), 0);
  put_str(s, SMOE_CF_DATA, "rng", "unsynced but closed cleanly");
  smoe_store_close(s);
  s = open_ok(*state, 1);
  expect_str(s, SMOE_CF_PLACEMENT, "step/00000001", "plan one");
  expect_str(s, SMOE_CF_META, "run", "config digest");
  expect_str(s, SMOE_CF_DATA, "rng", "unsynced but closed cleanly");
  smoe_store_close(s);
  s = open_ok(*state, 1); /* a third open: data now in table files */
  expect_str(s, SMOE_CF_PLACEMENT, "step/00000001", "plan one");
  smoe_store_close(s);
}

static void test_batch_atomic(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  smoe_err_t err = {{0}};
  smoe_batch_t *b = smoe_batch_new(s);
  char k[32], v[32];
  enum { N = 2000 };
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "chunk/%05d", i);
    snprintf(v, sizeof v, "payload %d", i * 7);
    smoe_batch_put(b, i % 2 ? SMOE_CF_SHARD : SMOE_CF_DENSE, k, strlen(k), v, strlen(v));
  }
  smoe_batch_put(b, SMOE_CF_META, "manifest/00000010", 17, "complete", 8);
  assert_int_equal(smoe_batch_count(b), N + 1);
  expect_missing(s, SMOE_CF_DENSE, "chunk/00000"); /* nothing visible before the write */
  expect_missing(s, SMOE_CF_META, "manifest/00000010");
  assert_int_equal(smoe_store_write(s, b, 1, &err), 0);
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "chunk/%05d", i);
    snprintf(v, sizeof v, "payload %d", i * 7);
    expect_str(s, i % 2 ? SMOE_CF_SHARD : SMOE_CF_DENSE, k, v);
  }
  expect_str(s, SMOE_CF_META, "manifest/00000010", "complete");
  /* reuse: deletes and puts in one unsynced batch */
  smoe_batch_clear(b);
  assert_int_equal(smoe_batch_count(b), 0);
  smoe_batch_delete(b, SMOE_CF_DENSE, "chunk/00000", 11);
  smoe_batch_put(b, SMOE_CF_DATA, "pos", 3, "42", 2);
  assert_int_equal(smoe_store_write(s, b, 0, &err), 0);
  expect_missing(s, SMOE_CF_DENSE, "chunk/00000");
  expect_str(s, SMOE_CF_DATA, "pos", "42");
  smoe_batch_free(b);
  smoe_batch_free(NULL);
  smoe_store_close(s);
  s = open_ok(*state, 0);
  expect_str(s, SMOE_CF_SHARD, "chunk/01999", "payload 13993");
  expect_str(s, SMOE_CF_META, "manifest/00000010", "complete");
  smoe_store_close(s);
}

typedef struct {
  char keys[16][32];
  int n, stop_after, abort_at;
} scan_log_t;

static int collect(void *ctx, const void *k, size_t kl, const void *v, size_t vl) {
  scan_log_t *c = ctx;
  assert_true(kl < 32 && c->n < 16);
  assert_true(vl == 1 && ((const char *)v)[0] == 'v');
  memcpy(c->keys[c->n], k, kl);
  c->keys[c->n][kl] = '\0';
  c->n++;
  if (c->n == c->abort_at) return -1;
  return c->n == c->stop_after ? 1 : 0;
}

static void test_scan_prefix(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  const char *keys[] = {"a/2", "b/1", "a/10", "a", "a/1", "a0", "a/\xff", "a/\xff\xff", "\xff"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    put_str(s, SMOE_CF_PLACEMENT, keys[i], "v");
  put_str(s, SMOE_CF_DATA, "a/3", "v"); /* another family: never seen */
  smoe_err_t err = {{0}};
  scan_log_t c = {.n = 0};
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, "a/", 2, collect, &c, &err), 0);
  assert_int_equal(c.n, 5); /* bytewise order */
  assert_string_equal(c.keys[0], "a/1");
  assert_string_equal(c.keys[1], "a/10");
  assert_string_equal(c.keys[2], "a/2");
  assert_string_equal(c.keys[3], "a/\xff");
  assert_string_equal(c.keys[4], "a/\xff\xff");
  c = (scan_log_t){.n = 0}; /* a prefix ending in 0xff */
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, "a/\xff", 3, collect, &c, &err), 0);
  assert_int_equal(c.n, 2);
  c = (scan_log_t){.n = 0}; /* all-0xff prefix: no upper bound */
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, "\xff", 1, collect, &c, &err), 0);
  assert_int_equal(c.n, 1);
  c = (scan_log_t){.n = 0}; /* empty prefix: every key */
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, NULL, 0, collect, &c, &err), 0);
  assert_int_equal(c.n, 9);
  assert_string_equal(c.keys[0], "a");
  assert_string_equal(c.keys[8], "\xff");
  c = (scan_log_t){.n = 0};
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, "zz", 2, collect, &c, &err), 0);
  assert_int_equal(c.n, 0);
  c = (scan_log_t){.stop_after = 2}; /* early stop is not an error */
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, "a/", 2, collect, &c, &err), 0);
  assert_int_equal(c.n, 2);
  c = (scan_log_t){.abort_at = 3}; /* abort is, naming the key */
  assert_int_equal(smoe_store_scan(s, SMOE_CF_PLACEMENT, "a/", 2, collect, &c, &err), -1);
  assert_non_null(strstr(err.msg, "'a/2'"));
  assert_non_null(strstr(err.msg, "placement"));
  smoe_store_close(s);
}

static void test_delete(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  smoe_err_t err = {{0}};
  char k[32];
  for (int i = 0; i < 10; i++) {
    snprintf(k, sizeof k, "chain/%02d", i);
    put_str(s, SMOE_CF_SHARD, k, "v");
  }
  assert_int_equal(smoe_store_delete(s, SMOE_CF_SHARD, "chain/09", 8, &err), 0);
  assert_int_equal(smoe_store_delete(s, SMOE_CF_SHARD, "absent", 6, &err), 0);
  assert_int_equal(smoe_store_delete_range(s, SMOE_CF_SHARD, "chain/02", 8, "chain/05", 8, &err),
                   0);
  scan_log_t c = {.n = 0};
  assert_int_equal(smoe_store_scan(s, SMOE_CF_SHARD, "chain/", 6, collect, &c, &err), 0);
  const char *want[] = {"chain/00", "chain/01", "chain/05", "chain/06", "chain/07", "chain/08"};
  assert_int_equal(c.n, 6);
  for (int i = 0; i < 6; i++) assert_string_equal(c.keys[i], want[i]);
  smoe_store_close(s);
  s = open_ok(*state, 0);
  expect_missing(s, SMOE_CF_SHARD, "chain/03");
  expect_str(s, SMOE_CF_SHARD, "chain/05", "v");
  smoe_store_close(s);
}

static void test_two_ranks_independent(void **state) {
  smoe_store_t *a = open_ok(*state, 0), *b = open_ok(*state, 1);
  put_str(a, SMOE_CF_SHARD, "k", "rank 0");
  put_str(b, SMOE_CF_SHARD, "k", "rank 1");
  put_str(a, SMOE_CF_DENSE, "only0", "x");
  expect_str(a, SMOE_CF_SHARD, "k", "rank 0");
  expect_str(b, SMOE_CF_SHARD, "k", "rank 1");
  expect_missing(b, SMOE_CF_DENSE, "only0");
  smoe_store_close(a);
  smoe_store_close(b);
  b = open_ok(*state, 1);
  expect_str(b, SMOE_CF_SHARD, "k", "rank 1");
  smoe_store_close(b);
  /* the same database cannot be opened twice at once (RocksDB's LOCK file) */
  a = open_ok(*state, 0);
  smoe_err_t err;
  open_fails(*state, 0, &err);
  assert_non_null(strstr(err.msg, "rank-0"));
  smoe_store_close(a);
}

static void test_format_header_checked(void **state) {
  const char *dir = *state;
  smoe_err_t err;
  /* wrong magic */
  smoe_store_t *s = open_ok(dir, 0);
  write_header(s, "NOTOURS!", 1, 0);
  smoe_store_close(s);
  open_fails(dir, 0, &err);
  assert_non_null(strstr(err.msg, "bad magic"));
  assert_non_null(strstr(err.msg, "rank-0"));
  /* a newer format */
  s = open_ok(dir, 1);
  write_header(s, SMOE_STORE_MAGIC, SMOE_STORE_VERSION + 1, 1);
  smoe_store_close(s);
  open_fails(dir, 1, &err);
  assert_non_null(strstr(err.msg, "newer"));
  /* another rank's database */
  s = open_ok(dir, 2);
  write_header(s, SMOE_STORE_MAGIC, SMOE_STORE_VERSION, 5);
  smoe_store_close(s);
  open_fails(dir, 2, &err);
  assert_non_null(strstr(err.msg, "rank 5"));
  /* header deleted: refused, not silently rewritten */
  s = open_ok(dir, 3);
  assert_int_equal(smoe_store_delete(s, SMOE_CF_META, SMOE_STORE_FORMAT_KEY,
                                     strlen(SMOE_STORE_FORMAT_KEY), &err),
                   0);
  smoe_store_close(s);
  open_fails(dir, 3, &err);
  assert_non_null(strstr(err.msg, "no format header"));
  /* a good header still opens */
  s = open_ok(dir, 4);
  write_header(s, SMOE_STORE_MAGIC, SMOE_STORE_VERSION, 4);
  smoe_store_close(s);
  smoe_store_close(open_ok(dir, 4));
}

/* A creation killed half way leaves <rank>.creating: the next open removes
 * it and makes the store whole; a rank folder without a database but with
 * files in it is refused, named, and left alone. */
static void test_interrupted_creation(void **state) {
  const char *dir = *state;
  char p[512];
  snprintf(p, sizeof p, "%s/rank-0.creating", dir);
  assert_int_equal(mkdir(p, 0777), 0);
  snprintf(p, sizeof p, "%s/rank-0.creating/MANIFEST-000001", dir);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs("half a database", f);
  fclose(f);
  smoe_store_t *s = open_ok(dir, 0);
  put_str(s, SMOE_CF_DATA, "k", "v");
  smoe_store_close(s);
  snprintf(p, sizeof p, "%s/rank-0.creating", dir);
  struct stat st;
  assert_int_not_equal(stat(p, &st), 0); /* gone */
  smoe_store_close(open_ok(dir, 0));     /* and the store opens again */
  snprintf(p, sizeof p, "%s/rank-1", dir);
  assert_int_equal(mkdir(p, 0777), 0);
  snprintf(p, sizeof p, "%s/rank-1/notes", dir);
  f = fopen(p, "w");
  assert_non_null(f);
  fputs("someone's file", f);
  fclose(f);
  smoe_err_t err;
  assert_null(smoe_store_open(dir, 1, &err));
  assert_non_null(strstr(err.msg, "rank-1"));
  assert_int_equal(stat(p, &st), 0); /* untouched */
}

/* A RocksDB made by another program (only the default family) is refused untouched. */
static void test_foreign_db_refused(void **state) {
  char p[256];
  snprintf(p, sizeof p, "%s/rank-0", (const char *)*state);
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(o, 1);
  char *e = NULL;
  rocksdb_t *db = rocksdb_open(o, p, &e);
  assert_null(e);
  rocksdb_close(db);
  smoe_err_t err;
  open_fails(*state, 0, &err);
  assert_non_null(strstr(err.msg, "not a swiftmoe state store"));
  size_t n = 0; /* no family was added */
  char **names = rocksdb_list_column_families(o, p, &n, &e);
  assert_null(e);
  assert_int_equal(n, 1);
  rocksdb_list_column_families_destroy(names, n);
  rocksdb_options_destroy(o);
}

/* A store written before the `grads` family existed: dropped here with
 * RocksDB's own API. Read-only it opens, and that family reads as empty;
 * read-write it is created again. */
static int count_key(void *ctx, const void *k, size_t klen, const void *v, size_t vlen) {
  (void)k, (void)klen, (void)v, (void)vlen;
  ++*(int *)ctx;
  return 0;
}
static void test_older_store_without_a_family(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  put_str(s, SMOE_CF_META, "run", "older");
  put_str(s, SMOE_CF_GRADS, "g", "gone with its family");
  smoe_store_close(s);
  char p[256];
  snprintf(p, sizeof p, "%s/rank-0", (const char *)*state);
  rocksdb_options_t *o = rocksdb_options_create();
  const char *names[] = {"meta", "shard", "dense", "placement", "data", "grads", "default"};
  const rocksdb_options_t *fo[7] = {o, o, o, o, o, o, o};
  rocksdb_column_family_handle_t *h[7];
  char *e = NULL;
  rocksdb_t *db = rocksdb_open_column_families(o, p, 7, names, fo, h, &e);
  assert_null(e);
  rocksdb_drop_column_family(db, h[5], &e);
  assert_null(e);
  for (int i = 0; i < 7; i++) rocksdb_column_family_handle_destroy(h[i]);
  rocksdb_close(db);
  rocksdb_options_destroy(o);
  smoe_err_t err = {{0}};
  s = smoe_store_open_readonly(*state, 0, &err);
  if (!s) print_error("%s\n", err.msg);
  assert_non_null(s);
  expect_str(s, SMOE_CF_META, "run", "older");
  void *v = NULL;
  size_t n = 0;
  assert_int_equal(smoe_store_get(s, SMOE_CF_GRADS, "g", 1, &v, &n, &err), 0);
  int keys = 0;
  assert_int_equal(smoe_store_scan(s, SMOE_CF_GRADS, NULL, 0, count_key, &keys, &err), 0);
  assert_int_equal(keys, 0);
  smoe_store_close(s);
  s = open_ok(*state, 0); /* read-write: the family is back, empty */
  put_str(s, SMOE_CF_GRADS, "g", "new");
  expect_str(s, SMOE_CF_GRADS, "g", "new");
  smoe_store_close(s);
}

static void test_regular_file_refused(void **state) {
  char f[256];
  snprintf(f, sizeof f, "%s/plain", (const char *)*state);
  FILE *fp = fopen(f, "w");
  assert_non_null(fp);
  fclose(fp);
  smoe_err_t err;
  open_fails(f, 0, &err); /* the state dir is a file */
  assert_non_null(strstr(err.msg, f));
  assert_non_null(strstr(err.msg, "not a directory"));
  snprintf(f, sizeof f, "%s/rank-7", (const char *)*state);
  fp = fopen(f, "w");
  assert_non_null(fp);
  fclose(fp);
  open_fails(*state, 7, &err); /* the database dir is a file */
  assert_non_null(strstr(err.msg, f));
  assert_non_null(strstr(err.msg, "not a directory"));
}

/* Finds the table file under dir holding pat and overwrites 16 bytes of it; true if
 * one was found. */
static bool corrupt_table_holding(const char *dir, const char *pat) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  bool done = false;
  for (struct dirent *de; !done && (de = readdir(d));) {
    size_t l = strlen(de->d_name);
    if (l < 4 || strcmp(de->d_name + l - 4, ".sst") != 0) continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    for (size_t i = 0; i + strlen(pat) <= n; i++)
      if (memcmp(buf + i, pat, strlen(pat)) == 0) {
        assert_int_equal(fseek(f, (long)i, SEEK_SET), 0);
        assert_int_equal(fwrite("ZZZZZZZZZZZZZZZZ", 1, 16, f), 16);
        done = true;
        break;
      }
    fclose(f);
  }
  closedir(d);
  return done;
}

/* A RocksDB error (a corrupt table block) comes back with the path, family and key. */
static void test_error_names_key(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  char big[4096];
  memset(big, 'Q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  put_str(s, SMOE_CF_DENSE, "layer3/w1\x01", big);
  smoe_store_close(s);
  smoe_store_close(open_ok(*state, 0)); /* recovery writes the memtable to a table file */
  char p[256];
  snprintf(p, sizeof p, "%s/rank-0", (const char *)*state);
  assert_true(corrupt_table_holding(p, "QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"));
  s = open_ok(*state, 0);
  smoe_err_t err = {{0}};
  void *v = NULL;
  size_t n = 0;
  assert_int_equal(smoe_store_get(s, SMOE_CF_DENSE, "layer3/w1\x01", 10, &v, &n, &err), -1);
  assert_null(v);
  assert_non_null(strstr(err.msg, "'layer3/w1\\x01'"));
  assert_non_null(strstr(err.msg, "dense"));
  assert_non_null(strstr(err.msg, "rank-0"));
  assert_non_null(strstr(err.msg, "Corruption"));
  smoe_store_close(s);
}

/* Big shard values go to blob files (integrated BlobDB) and read back intact. */
static void test_shard_blob(void **state) {
  smoe_store_t *s = open_ok(*state, 0);
  size_t n = 256 * 1024;
  unsigned char *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) big[i] = (unsigned char)smoe_mix64(i);
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_put(s, SMOE_CF_SHARD, "chunk", 5, big, n, &err), 0);
  smoe_store_close(s);
  s = open_ok(*state, 0);
  void *v = NULL;
  size_t vl = 0;
  assert_int_equal(smoe_store_get(s, SMOE_CF_SHARD, "chunk", 5, &v, &vl, &err), 1);
  assert_int_equal(vl, n);
  assert_memory_equal(v, big, n);
  free(v);
  smoe_store_close(s);
  char p[256];
  snprintf(p, sizeof p, "%s/rank-0", (const char *)*state);
  DIR *d = opendir(p);
  assert_non_null(d);
  int blobs = 0;
  for (struct dirent *de; (de = readdir(d));) {
    size_t l = strlen(de->d_name);
    blobs += l > 5 && strcmp(de->d_name + l - 5, ".blob") == 0;
  }
  closedir(d);
  assert_true(blobs >= 1);
  free(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
      T(test_open_creates),
      T(test_put_get_each_family),
      T(test_get_missing),
      T(test_reopen_persists),
      T(test_batch_atomic),
      T(test_scan_prefix),
      T(test_delete),
      T(test_two_ranks_independent),
      T(test_format_header_checked),
      T(test_foreign_db_refused),
      T(test_interrupted_creation),
      T(test_regular_file_refused),
      T(test_error_names_key),
      T(test_shard_blob),
      T(test_older_store_without_a_family),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
