/* test_ckpt.c: checkpoints in the state store (ckpt/ckpt.h): round trips,
 * delta chains, agreement and pruning, resume and its fallbacks, shape
 * checks, damaged chunks and manifests, and the placement log.
 *
 * The state is three plain arrays: a float region in `shard` that spans
 * several chunks (each over the store's blob threshold), an empty region in
 * `dense` and a small double region in `data`, filled with deterministic
 * pseudo-random numbers. Damage is done with smoe_store_* on the rank's store
 * while the checkpoint handle is closed. The world is one process, no MPI.
 *
 * The last four tests pin defects found by review and since fixed. One runs
 * this program again as a child (`test_ckpt --verify DIR STEP`) because the
 * defect overran a heap buffer.
 *
 * Every test works in its own mkdtemp directory under /tmp, removed at the end. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs these four first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "ckpt.h"
#include "codec.h"
#include "comm.h"
#include "store.h"

/* --- the state: three regions ---------------------------------------------- */

#define CHUNK (80u * 1024u)            /* chunk_bytes: over SMOE_STORE_BLOB_MIN */
#define BIG_BYTES (3u * CHUNK + 1000u) /* 4 chunks, the last one short */
#define BIG_N (BIG_BYTES / sizeof(float))
#define TINY_N 3 /* doubles */
#define N_REGIONS 3
#define TOTAL (BIG_BYTES + TINY_N * sizeof(double))
#define MAX_STEP 16

enum { R_BIG = 0, R_EMPTY = 1, R_TINY = 2 };

typedef struct {
  char dir[64];   /* the test's temp directory */
  char ckdir[96]; /* the checkpoint folder under it */
  float big[BIG_N];
  double empty_dummy; /* the empty region points here (never read or written) */
  double tiny[TINY_N];
  uint8_t snap[MAX_STEP + 1][TOTAL]; /* the state checkpointed at each step */
  smoe_comm_t *comm;
  smoe_ckpt_t *ck; /* open handles, closed by teardown if a test fails */
  smoe_store_t *raw;
} fx_t;

static uint64_t mix(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double uniform(uint64_t *s) {
  return (double)(mix(s) >> 11) * 0x1p-53 - 0.5;
}

static void fill(fx_t *f, uint64_t seed) {
  for (size_t i = 0; i < BIG_N; i++) f->big[i] = (float)uniform(&seed);
  for (int i = 0; i < TINY_N; i++) f->tiny[i] = uniform(&seed) * 1e3;
}
/* A training step's worth of change: small updates to one element in 16. */
static void nudge(fx_t *f, uint64_t seed) {
  for (size_t i = seed % 16; i < BIG_N; i += 16) f->big[i] += (float)(1e-3 * uniform(&seed));
  for (int i = 0; i < TINY_N; i++) f->tiny[i] += 1.0;
}
static void scribble(fx_t *f) {
  memset(f->big, 0xa5, sizeof f->big);
  memset(f->tiny, 0x5a, sizeof f->tiny);
}
static void snapshot(const fx_t *f, uint8_t *out) {
  memcpy(out, f->big, BIG_BYTES);
  memcpy(out + BIG_BYTES, f->tiny, sizeof f->tiny);
}
static void expect_state(const fx_t *f, int64_t step) {
  assert_true(step >= 0 && step <= MAX_STEP);
  assert_memory_equal(f->big, f->snap[step], BIG_BYTES);
  assert_memory_equal(f->tiny, f->snap[step] + BIG_BYTES, sizeof f->tiny);
}

static const smoe_ckpt_shape_t SHAPES[] = {{"model.dim", 128}, {"ranks", 1}};

static void regions(fx_t *f, smoe_ckpt_region_t r[N_REGIONS], size_t big_bytes) {
  r[R_BIG] = (smoe_ckpt_region_t){"big", SMOE_CF_SHARD, f->big, big_bytes, 4, NULL};
  r[R_EMPTY] = (smoe_ckpt_region_t){"empty", SMOE_CF_DENSE, &f->empty_dummy, 0, 8, NULL};
  r[R_TINY] = (smoe_ckpt_region_t){"tiny", SMOE_CF_DATA, f->tiny, sizeof f->tiny, 8, NULL};
}

static size_t log_budget; /* the placement log's o.log_bytes (0: unbounded) */
static int make_bundles; /* o.copy */

static smoe_ckpt_opts_t opts(int full_every, int keep, size_t chunk) {
  return (smoe_ckpt_opts_t){full_every, keep, 1, chunk, SMOE_ENC_SHUFFLE_ZSTD,
                            SMOE_ENC_XOR_SHUFFLE_ZSTD, log_budget, make_bundles};
}

/* Opens the checkpoint with the given shapes, big region size and chunk size. */
static smoe_ckpt_t *open_with(fx_t *f, const smoe_ckpt_shape_t *shapes, int n_shapes,
                              size_t big_bytes, int full_every, int keep, size_t chunk) {
  smoe_ckpt_region_t r[N_REGIONS];
  regions(f, r, big_bytes);
  smoe_ckpt_opts_t o = opts(full_every, keep, chunk);
  smoe_err_t err = {{0}};
  smoe_ckpt_t *ck = smoe_ckpt_open(f->ckdir, 0, r, N_REGIONS, shapes, n_shapes, 0x1234, &o, &err);
  if (!ck) print_error("smoe_ckpt_open: %s\n", err.msg);
  assert_non_null(ck);
  assert_null(f->ck);
  f->ck = ck;
  return ck;
}
static void close_ck(fx_t *f, smoe_ckpt_t *ck) {
  assert_ptr_equal(ck, f->ck);
  smoe_ckpt_close(ck);
  f->ck = NULL;
}
static smoe_ckpt_t *open_ck(fx_t *f, int full_every, int keep) {
  return open_with(f, SHAPES, 2, BIG_BYTES, full_every, keep, CHUNK);
}

/* Stages, writes and finishes the checkpoint of `step`, remembering the state. */
static void checkpoint(fx_t *f, smoe_ckpt_t *ck, int64_t step) {
  assert_true(step >= 0 && step <= MAX_STEP);
  snapshot(f, f->snap[step]);
  assert_true(smoe_ckpt_stage(ck, step) >= 0.0);
  assert_int_equal(smoe_ckpt_pending(ck), step);
  assert_int_equal(smoe_ckpt_local_status(ck), 0);
  smoe_ckpt_write(ck);
  smoe_err_t err = {{0}};
  int rc = smoe_ckpt_finish(ck, &err);
  if (rc != 0) print_error("smoe_ckpt_finish: %s\n", err.msg);
  assert_int_equal(rc, 0);
  assert_int_equal(smoe_ckpt_local_status(ck), 1);
}

static void agree(smoe_ckpt_t *ck, int status) {
  smoe_err_t err = {{0}};
  int rc = smoe_ckpt_agreed(ck, status, &err);
  if (rc != 0) print_error("smoe_ckpt_agreed: %s\n", err.msg);
  assert_int_equal(rc, 0);
  assert_int_equal(smoe_ckpt_pending(ck), -1);
}

static int64_t resume_ok(fx_t *f, smoe_ckpt_t *ck, int64_t want) {
  int64_t step = -2;
  smoe_err_t err = {{0}};
  int rc = smoe_ckpt_resume(ck, f->comm, want, INT64_MAX, NULL, NULL, &step, &err);
  if (rc == 0 && step >= 0) rc = smoe_ckpt_discard_after(ck, step, &err); /* as the saver does */
  if (rc != 0) print_error("smoe_ckpt_resume(%lld): %s\n", (long long)want, err.msg);
  assert_int_equal(rc, 0);
  return step;
}

/* Resume fails; err gets the message. */
static void resume_fails(fx_t *f, smoe_ckpt_t *ck, int64_t want, smoe_err_t *err) {
  int64_t step = -2;
  memset(err, 0, sizeof *err);
  assert_int_equal(smoe_ckpt_resume(ck, f->comm, want, INT64_MAX, NULL, NULL, &step, err), -1);
  assert_true(err->msg[0] != '\0');
}

static void expect_msg(const smoe_err_t *err, const char *part) {
  if (!strstr(err->msg, part)) print_error("'%s' not in: %s\n", part, err->msg);
  assert_non_null(strstr(err->msg, part));
}

/* The manifests of store s (*n of them; the caller frees the result). */
static smoe_ckpt_info_t *list(smoe_store_t *s, int *n) {
  smoe_ckpt_info_t *v = NULL;
  smoe_err_t err = {{0}};
  int rc = smoe_ckpt_list(s, &v, n, &err);
  if (rc != 0) print_error("smoe_ckpt_list: %s\n", err.msg);
  assert_int_equal(rc, 0);
  return v;
}

/* Asserts that store s holds exactly the checkpoints of `steps` (ascending). */
static void expect_steps(smoe_store_t *s, const int64_t *steps, int n_steps) {
  int n = 0;
  smoe_ckpt_info_t *v = list(s, &n);
  if (n != n_steps) {
    print_error("expected %d checkpoints, store has %d:", n_steps, n);
    for (int i = 0; i < n; i++) print_error(" %lld", (long long)v[i].step);
    print_error("\n");
  }
  assert_int_equal(n, n_steps);
  for (int i = 0; i < n; i++) assert_int_equal(v[i].step, steps[i]);
  free(v);
}

static void verify_ok(smoe_store_t *s, int64_t step) {
  smoe_err_t err = {{0}};
  int rc = smoe_ckpt_verify(s, step, &err);
  if (rc != 0) print_error("smoe_ckpt_verify(%lld): %s\n", (long long)step, err.msg);
  assert_int_equal(rc, 0);
}

/* --- raw access to the store (the checkpoint handle closed) ---------------- */

static smoe_store_t *store_open(fx_t *f) {
  smoe_err_t err = {{0}};
  smoe_store_t *s = smoe_store_open(f->ckdir, 0, &err);
  if (!s) print_error("smoe_store_open: %s\n", err.msg);
  assert_non_null(s);
  assert_null(f->raw);
  f->raw = s;
  return s;
}
static void store_close(fx_t *f, smoe_store_t *s) {
  assert_ptr_equal(s, f->raw);
  smoe_store_close(s);
  f->raw = NULL;
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static void chunk_key(uint8_t k[13], int64_t step, int region, uint32_t chunk) {
  put_be64(k, (uint64_t)step);
  k[8] = (uint8_t)region;
  for (int i = 0; i < 4; i++) k[9 + i] = (uint8_t)(chunk >> (24 - 8 * i));
}
static void manifest_key(uint8_t k[9], int64_t step) {
  k[0] = 'm';
  put_be64(k + 1, (uint64_t)step);
}

static void *get_ok(smoe_store_t *s, smoe_cf_t cf, const void *k, size_t klen, size_t *n) {
  void *v = NULL;
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_get(s, cf, k, klen, &v, n, &err), 1);
  return v;
}
static void put_ok(smoe_store_t *s, smoe_cf_t cf, const void *k, size_t klen, const void *v,
                   size_t n) {
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_put(s, cf, k, klen, v, n, &err), 0);
}
static void delete_ok(smoe_store_t *s, smoe_cf_t cf, const void *k, size_t klen) {
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_store_delete(s, cf, k, klen, &err), 0);
}

/* Flips one byte in the middle of chunk `chunk` of the big region of `step`. */
static void flip_chunk_byte(smoe_store_t *s, int64_t step, uint32_t chunk) {
  uint8_t k[13];
  chunk_key(k, step, R_BIG, chunk);
  size_t n = 0;
  uint8_t *v = get_ok(s, SMOE_CF_SHARD, k, sizeof k, &n);
  assert_true(n > SMOE_CODEC_HEADER + 2);
  v[n / 2] ^= 0x10;
  put_ok(s, SMOE_CF_SHARD, k, sizeof k, v, n);
  free(v);
}

/* --- fixture ---------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *w) {
  (void)st, (void)flag, (void)w;
  return remove(p);
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  strcpy(f->dir, "/tmp/smoe_test_ckpt_XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  snprintf(f->ckdir, sizeof f->ckdir, "%s/state", f->dir);
  f->comm = smoe_comm_local();
  fill(f, 42);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  smoe_ckpt_close(f->ck); /* left open by a failed assertion */
  smoe_store_close(f->raw);
  int rc = nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  smoe_comm_finalize(f->comm);
  free(f);
  return rc;
}

/* --- 1. a full checkpoint and back ------------------------------------------ */

static void test_full_round_trip(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 2);
  assert_int_equal(smoe_ckpt_pending(ck), -1);
  assert_int_equal(smoe_ckpt_local_status(ck), 1);
  checkpoint(f, ck, 5);

  int n = 0;
  smoe_ckpt_info_t *v = list(smoe_ckpt_store(ck), &n);
  assert_int_equal(n, 1);
  assert_int_equal(v[0].step, 5);
  assert_int_equal(v[0].base_step, -1);
  assert_int_equal(v[0].full_step, 5);
  assert_int_equal(v[0].chain_len, 0);
  assert_int_equal(v[0].global, 0); /* not agreed yet */
  assert_int_equal(v[0].rank, 0);
  assert_int_equal(v[0].G, 1); /* the "ranks" shape */
  assert_int_equal(v[0].raw_bytes, TOTAL);
  assert_true(v[0].stored_bytes > 0);
  assert_int_equal(v[0].n_chunks, 4 + 0 + 1);
  assert_true(v[0].unix_time > 0);
  free(v);
  verify_ok(smoe_ckpt_store(ck), 5);

  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 5);
  expect_state(f, 5);
  assert_int_equal(smoe_ckpt_last_global(ck), 5);
  v = list(smoe_ckpt_store(ck), &n); /* every rank restored it: recorded globally complete */
  assert_int_equal(n, 1);
  assert_int_equal(v[0].global, 1);
  free(v);
  close_ck(f, ck);

  /* and from a fresh process's point of view: reopened */
  ck = open_ck(f, 1, 2);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, 5), 5);
  expect_state(f, 5);
  close_ck(f, ck);
}

/* --- 2. full and delta checkpoints, each one restored ----------------------- */

static void test_delta_chain(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 3, 100);
  for (int64_t s = 1; s <= 7; s++) {
    if (s > 1) nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
  }
  /* full, delta, delta, full, delta, delta, full */
  const int64_t base[8] = {0, -1, 1, 2, -1, 4, 5, -1}, full[8] = {0, 1, 1, 1, 4, 4, 4, 7};
  const int chain[8] = {0, 0, 1, 2, 0, 1, 2, 0};
  int n = 0;
  smoe_ckpt_info_t *v = list(smoe_ckpt_store(ck), &n);
  assert_int_equal(n, 7);
  for (int i = 0; i < n; i++) {
    const int64_t s = i + 1;
    assert_int_equal(v[i].step, s);
    assert_int_equal(v[i].base_step, base[s]);
    assert_int_equal(v[i].full_step, full[s]);
    assert_int_equal(v[i].chain_len, chain[s]);
    assert_int_equal(v[i].raw_bytes, TOTAL);
  }
  /* a delta of a small change is much smaller than a full checkpoint */
  assert_true(v[1].stored_bytes * 2 < v[0].stored_bytes);
  free(v);
  for (int64_t s = 1; s <= 7; s++) verify_ok(smoe_ckpt_store(ck), s);
  close_ck(f, ck);

  /* newest first: resuming a step discards the newer ones */
  for (int64_t s = 7; s >= 1; s--) {
    ck = open_ck(f, 3, 100);
    scribble(f);
    assert_int_equal(resume_ok(f, ck, s), s);
    expect_state(f, s);
    int64_t left[7];
    for (int i = 0; i < s; i++) left[i] = i + 1;
    expect_steps(smoe_ckpt_store(ck), left, (int)s);
    close_ck(f, ck);
  }

  /* after a resume, the next checkpoint is a delta against the restored state */
  ck = open_ck(f, 3, 100);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  expect_state(f, 1);
  nudge(f, 99);
  checkpoint(f, ck, 2);
  v = list(smoe_ckpt_store(ck), &n);
  assert_int_equal(n, 2);
  assert_int_equal(v[1].base_step, 1);
  assert_int_equal(v[1].chain_len, 1);
  free(v);
  close_ck(f, ck);
  ck = open_ck(f, 3, 100);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 2);
  expect_state(f, 2);
  close_ck(f, ck);
}

/* --- 3. agreement and pruning ------------------------------------------------ */

static int64_t full_of(int64_t s, int full_every) {
  return 1 + (s - 1) / full_every * full_every;
}

static void test_agree_and_prune(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 3, 2);
  for (int64_t s = 1; s <= 7; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
    agree(ck, 1);
    assert_int_equal(smoe_ckpt_last_global(ck), s);
    /* the two newest (s and s - 1) and the chain of the older one */
    int64_t want[8];
    int n_want = 0;
    for (int64_t t = s > 1 ? full_of(s - 1, 3) : 1; t <= s; t++) want[n_want++] = t;
    expect_steps(smoe_ckpt_store(ck), want, n_want);
  }
  int n = 0;
  smoe_ckpt_info_t *v = list(smoe_ckpt_store(ck), &n);
  for (int i = 0; i < n; i++) assert_int_equal(v[i].global, 1);
  free(v);

  /* a checkpoint another rank failed is not recorded, but stays while a newer
   * delta needs it */
  nudge(f, 8);
  checkpoint(f, ck, 8); /* delta on 7 */
  agree(ck, -1);
  assert_int_equal(smoe_ckpt_last_global(ck), 7);
  nudge(f, 9);
  checkpoint(f, ck, 9); /* delta on 8 */
  agree(ck, 1);
  const int64_t want[] = {7, 8, 9};
  expect_steps(smoe_ckpt_store(ck), want, 3);
  v = list(smoe_ckpt_store(ck), &n);
  assert_int_equal(v[0].global, 1);
  assert_int_equal(v[1].global, 0);
  assert_int_equal(v[2].global, 1);
  free(v);
  close_ck(f, ck);

  /* all full: just the two newest */
  snprintf(f->ckdir, sizeof f->ckdir, "%s/all_full", f->dir);
  ck = open_ck(f, 1, 2);
  for (int64_t s = 1; s <= 5; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
    agree(ck, 1);
  }
  const int64_t want2[] = {4, 5};
  expect_steps(smoe_ckpt_store(ck), want2, 2);
  close_ck(f, ck);
}

/* --- 4. nothing to resume ------------------------------------------------------ */

static void test_resume_empty(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 2);
  snapshot(f, f->snap[0]);
  assert_int_equal(resume_ok(f, ck, -1), -1);
  expect_state(f, 0); /* untouched */
  smoe_err_t err;
  resume_fails(f, ck, 3, &err);
  expect_msg(&err, "step 3");
  expect_state(f, 0);
  close_ck(f, ck);
}

/* --- 5. another model -------------------------------------------------------- */

static void test_shape_mismatch(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 2);
  checkpoint(f, ck, 1);
  close_ck(f, ck);
  smoe_err_t err;

  const smoe_ckpt_shape_t other[] = {{"model.dim", 64}, {"ranks", 1}};
  ck = open_with(f, other, 2, BIG_BYTES, 1, 2, CHUNK);
  scribble(f);
  snapshot(f, f->snap[0]);
  resume_fails(f, ck, -1, &err);
  expect_msg(&err, "model.dim = 64 (checkpoint: 128)");
  expect_state(f, 0); /* untouched */
  resume_fails(f, ck, 1, &err);
  expect_msg(&err, "model.dim = 64 (checkpoint: 128)");
  close_ck(f, ck);

  /* every mismatch is listed, a shape the checkpoint lacks too */
  const smoe_ckpt_shape_t more[] = {{"model.dim", 64}, {"ranks", 1}, {"moe.top_k", 2}};
  ck = open_with(f, more, 3, BIG_BYTES, 1, 2, CHUNK);
  resume_fails(f, ck, -1, &err);
  expect_msg(&err, "model.dim = 64 (checkpoint: 128)");
  expect_msg(&err, "moe.top_k = 2 (checkpoint: absent)");
  close_ck(f, ck);

  /* same shapes, another region size */
  ck = open_with(f, SHAPES, 2, BIG_BYTES - 8, 1, 2, CHUNK);
  resume_fails(f, ck, -1, &err);
  expect_msg(&err, "layout");
  expect_state(f, 0);
  close_ck(f, ck);

  /* nothing was deleted: the right run still resumes */
  ck = open_ck(f, 1, 2);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  expect_state(f, 1);
  close_ck(f, ck);
}

/* --- 6. damage ----------------------------------------------------------------- */

/* (a) a flipped byte in a chunk */
static void test_corrupt_chunk(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 10);
  for (int64_t s = 1; s <= 3; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
  }
  close_ck(f, ck);

  smoe_store_t *s = store_open(f);
  flip_chunk_byte(s, 3, 1);
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_ckpt_verify(s, 3, &err), -1);
  expect_msg(&err, "rank 0");
  expect_msg(&err, "step 3");
  expect_msg(&err, "chunk 1");
  expect_msg(&err, "corrupted");
  verify_ok(s, 2);
  store_close(f, s);

  ck = open_ck(f, 1, 10);
  scribble(f);
  snapshot(f, f->snap[0]);
  resume_fails(f, ck, 3, &err);
  expect_msg(&err, "corrupted");
  expect_state(f, 0); /* a failed restore leaves the regions alone */
  assert_int_equal(resume_ok(f, ck, -1), 2);
  expect_state(f, 2);
  const int64_t left[] = {1, 2};
  expect_steps(smoe_ckpt_store(ck), left, 2);
  close_ck(f, ck);
}

/* (b) the newest manifest deleted */
static void test_deleted_manifest(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 10);
  for (int64_t s = 1; s <= 2; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
  }
  close_ck(f, ck);

  smoe_store_t *s = store_open(f);
  uint8_t k[9];
  manifest_key(k, 2);
  delete_ok(s, SMOE_CF_META, k, sizeof k);
  const int64_t one[] = {1};
  expect_steps(s, one, 1);
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_ckpt_verify(s, 2, &err), -1);
  expect_msg(&err, "missing");
  store_close(f, s);

  ck = open_ck(f, 1, 10);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  expect_state(f, 1);
  close_ck(f, ck);
}

/* (c) a truncated manifest */
static void test_truncated_manifest(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 10);
  for (int64_t s = 1; s <= 2; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
  }
  close_ck(f, ck);

  smoe_store_t *s = store_open(f);
  uint8_t k[9];
  manifest_key(k, 2);
  size_t n = 0;
  void *v = get_ok(s, SMOE_CF_META, k, sizeof k, &n);
  put_ok(s, SMOE_CF_META, k, sizeof k, v, n - 10);
  free(v);
  smoe_ckpt_info_t *info = NULL;
  int n_info = 0;
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_ckpt_list(s, &info, &n_info, &err), -1);
  assert_null(info);
  expect_msg(&err, "manifest of step 2");
  expect_msg(&err, "'m'+2");
  assert_int_equal(smoe_ckpt_verify(s, 2, &err), -1);
  expect_msg(&err, "manifest");
  store_close(f, s);

  ck = open_ck(f, 1, 10);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  expect_state(f, 1);
  const int64_t one[] = {1}; /* the damaged one discarded */
  expect_steps(smoe_ckpt_store(ck), one, 1);
  close_ck(f, ck);
}

/* (d) a chunk of a delta's base deleted */
static void test_missing_base_chunk(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 3, 10);
  checkpoint(f, ck, 1); /* full */
  nudge(f, 2);
  checkpoint(f, ck, 2); /* delta on 1 */
  close_ck(f, ck);

  smoe_store_t *s = store_open(f);
  uint8_t k[13];
  chunk_key(k, 1, R_BIG, 0);
  delete_ok(s, SMOE_CF_SHARD, k, sizeof k);
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_ckpt_verify(s, 2, &err), -1);
  expect_msg(&err, "missing");
  store_close(f, s);

  ck = open_ck(f, 3, 10);
  scribble(f);
  snapshot(f, f->snap[0]);
  resume_fails(f, ck, 2, &err);
  expect_msg(&err, "rank 0");
  expect_msg(&err, "step 1"); /* the key that is missing: the base's */
  expect_msg(&err, "chunk 0");
  expect_msg(&err, "missing");
  expect_state(f, 0);
  close_ck(f, ck);
}

/* --- 7. the placement log ----------------------------------------------------- */

enum { PL = 2, PE = 4, PG = 2, PS = 3 };

/* A valid placement that changes with the step: rank 0 holds experts s, s+1,
 * s+2 (mod 4) of layer l (s = step + l), rank 1 the fourth, one more and an
 * empty slot (-1). */
static void plog_make(smoe_plog_t *p, int64_t step, int64_t loads[PL * PE], int replicas[PL * PE],
                      int slot_expert[PL * PG * PS]) {
  *p = (smoe_plog_t){PL, PE, PG, PS, step, loads, replicas, slot_expert, 0, NULL};
  for (int l = 0; l < PL; l++) {
    int *se = slot_expert + l * PG * PS, s = (int)((step + l) % PE);
    for (int i = 0; i < 3; i++) se[i] = (s + i) % PE;
    se[3] = (s + 3) % PE, se[4] = s, se[5] = -1;
    for (int e = 0; e < PE; e++) {
      loads[l * PE + e] = step * 1000 + l * PE + e;
      replicas[l * PE + e] = e == s ? 2 : 1;
    }
  }
}

static void plog_expect(const smoe_plog_t *got, int64_t step) {
  int64_t loads[PL * PE];
  int replicas[PL * PE], slot_expert[PL * PG * PS];
  smoe_plog_t want;
  plog_make(&want, step, loads, replicas, slot_expert);
  assert_int_equal(got->L, PL);
  assert_int_equal(got->E, PE);
  assert_int_equal(got->G, PG);
  assert_int_equal(got->S, PS);
  assert_int_equal(got->step, step);
  assert_memory_equal(got->loads, loads, sizeof loads);
  assert_memory_equal(got->replicas, replicas, sizeof replicas);
  assert_memory_equal(got->slot_expert, slot_expert, sizeof slot_expert);
}

typedef struct {
  int n;
  int64_t last;
} plog_seen_t;
static int plog_visit(void *ctx, const smoe_plog_t *rec) {
  plog_seen_t *seen = ctx;
  plog_expect(rec, seen->last + 1);
  seen->last = rec->step;
  seen->n++;
  return 0;
}

static void test_placement_log(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 2);
  smoe_err_t err = {{0}};
  for (int64_t s = 1; s <= 40; s++) {
    int64_t loads[PL * PE];
    int replicas[PL * PE], slot_expert[PL * PG * PS];
    smoe_plog_t rec;
    plog_make(&rec, s, loads, replicas, slot_expert);
    assert_int_equal(smoe_ckpt_log(ck, &rec, &err), 0);
  }
  close_ck(f, ck); /* writes the last batch */

  smoe_store_t *s = store_open(f);
  for (int64_t step = 1; step <= 40; step++) {
    smoe_plog_t rec;
    assert_int_equal(smoe_plog_read(s, step, &rec, &err), 1);
    plog_expect(&rec, step);
    smoe_plog_free(&rec);
  }
  smoe_plog_t rec;
  assert_int_equal(smoe_plog_read(s, 41, &rec, &err), 0);
  plog_seen_t seen = {0, 0};
  assert_int_equal(smoe_plog_scan(s, plog_visit, &seen, &err), 0);
  assert_int_equal(seen.n, 40);
  assert_int_equal(seen.last, 40);

  uint8_t k[8];
  put_be64(k, 41);
  put_ok(s, SMOE_CF_PLACEMENT, k, sizeof k, "garbage", 7);
  memset(&err, 0, sizeof err);
  assert_int_equal(smoe_plog_read(s, 41, &rec, &err), -1);
  expect_msg(&err, "step 41");
  assert_null(rec.loads);
  /* a well-formed record under another step's key is malformed too */
  uint8_t k40[8];
  put_be64(k40, 40);
  size_t n = 0;
  void *v = get_ok(s, SMOE_CF_PLACEMENT, k40, 8, &n);
  put_be64(k, 42);
  put_ok(s, SMOE_CF_PLACEMENT, k, sizeof k, v, n);
  free(v);
  memset(&err, 0, sizeof err);
  assert_int_equal(smoe_plog_read(s, 42, &rec, &err), -1);
  expect_msg(&err, "step 42");
  /* and the scan stops at a malformed record */
  seen = (plog_seen_t){0, 0};
  assert_int_equal(smoe_plog_scan(s, plog_visit, &seen, &err), -1);
  assert_int_equal(seen.n, 40);
  store_close(f, s);
}

/* The log keeps about log_bytes: the newest budget / record-size steps, and
 * never a record a kept checkpoint resumes with. */
static void test_placement_log_budget(void **state) {
  fx_t *f = *state;
  int64_t loads[PL * PE];
  int replicas[PL * PE], slot_expert[PL * PG * PS];
  smoe_plog_t rec;
  plog_make(&rec, 1, loads, replicas, slot_expert);
  uint8_t buf[1024];
  smoe_err_t err = {{0}};
  size_t one = smoe_plog_encode(&rec, buf, sizeof buf, &err);
  assert_true(one > 0);
  log_budget = 5 * one + one / 2; /* five records (sizes vary by a few bytes) */
  /* after 8: records 4..8 kept; after 16: 12..16 (checkpoint 8 pruned) */
  smoe_ckpt_t *ck = open_ck(f, 1, 1);
  for (int64_t s = 1; s <= 16; s++) {
    plog_make(&rec, s, loads, replicas, slot_expert);
    assert_int_equal(smoe_ckpt_log(ck, &rec, &err), 0);
    if (s == 2 || s == 8 || s == 16) { /* the log is pruned when a checkpoint is agreed */
      checkpoint(f, ck, s);
      agree(ck, 1);
    }
  }
  close_ck(f, ck);
  log_budget = 0;
  smoe_store_t *s = store_open(f);
  for (int64_t step = 1; step <= 16; step++) {
    smoe_plog_t r;
    int want = step >= 12; /* 16 - 5 + 1; checkpoint 8's record went with it (keep = 1) */
    assert_int_equal(smoe_plog_read(s, step, &r, &err), want);
    smoe_plog_free(&r);
  }
  store_close(f, s);
}

/* Placement records are checksummed and checked as placements: every
 * damage is refused with what is wrong, a good record round-trips. */
static void expect_decode_fails(const uint8_t *b, size_t n, const char *what) {
  smoe_plog_t p;
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_plog_decode(&p, b, n, &err), -1);
  assert_null(p.slot_expert);
  expect_msg(&err, what);
}

/* The version 2 bytes of a record (fixed-width arrays, no rank, no own
 * counts), as builds before December 2026 wrote them; v1 = drop the checksum. */
static size_t plog_v2(const smoe_plog_t *p, uint8_t *b) {
  const size_t le = (size_t)p->L * p->E, lgs = (size_t)p->L * p->G * p->S;
  size_t n = 0;
#define PUT(v, bytes) \
  for (int i_ = 0; i_ < (bytes); i_++) b[n++] = (uint8_t)((uint64_t)(v) >> (8 * i_))
  PUT(2, 1); PUT(0, 1); PUT(p->L, 2); PUT(p->E, 2); PUT(p->G, 2); PUT(p->S, 2); PUT(p->step, 8);
  for (size_t i = 0; i < le; i++) PUT(p->loads[i], 4);
  for (size_t i = 0; i < le; i++) PUT(p->replicas[i], 2);
  for (size_t i = 0; i < lgs; i++) PUT((uint16_t)(int16_t)p->slot_expert[i], 2);
  uint64_t h = smoe_codec_hash(b, n);
  PUT(h, 8);
#undef PUT
  return n;
}

static void test_placement_record_checks(void **state) {
  (void)state;
  int64_t loads[PL * PE], own[PL * PE];
  int replicas[PL * PE], slot_expert[PL * PG * PS];
  smoe_plog_t rec, back;
  plog_make(&rec, 7, loads, replicas, slot_expert);
  for (int i = 0; i < PL * PE; i++) own[i] = loads[i] / 3;
  rec.rank = 1, rec.own = own;
  const size_t cap = smoe_plog_bound(PL, PE, PG, PS);
  uint8_t *b = malloc(cap), *c = malloc(cap);
  smoe_err_t err = {{0}};
  const size_t n = smoe_plog_encode(&rec, b, cap, &err);
  assert_true(n > 0 && n <= cap);
  assert_int_equal(smoe_plog_decode(&back, b, n, &err), 0);
  plog_expect(&back, 7);
  assert_int_equal(back.rank, 1);
  assert_memory_equal(back.own, own, sizeof own);
  uint64_t fp = smoe_plog_fingerprint(&back);
  smoe_plog_free(&back);
  /* every single flipped bit, anywhere, fails the checksum */
  for (size_t i = 0; i < n; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(c, b, n);
      c[i] ^= (uint8_t)(1 << bit);
      smoe_plog_t p;
      assert_int_equal(smoe_plog_decode(&p, c, n, NULL), -1);
    }
  memcpy(c, b, n);
  c[n / 2] ^= 1;
  expect_decode_fails(c, n, "checksum mismatch");
  expect_decode_fails(b, n - 1, "checksum mismatch"); /* truncated */
  expect_decode_fails(b, 5, "shorter than a record's header");
  memcpy(c, b, n);
  c[0] = 4;
  expect_decode_fails(c, n, "format version 4");
  /* well-formed bytes, bad placements (re-encoded: the checksum is right) */
  size_t m;
  slot_expert[0] = PE + 3;
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "slot 0 of rank 0 holds expert 7");
  slot_expert[0] = -2;
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "holds expert -2");
  plog_make(&rec, 7, loads, replicas, slot_expert);
  rec.rank = 1, rec.own = own;
  slot_expert[3] = -1; /* layer 0's expert 2 (rank 1's first slot) removed */
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "layer 0: expert 2 has no slot");
  plog_make(&rec, 7, loads, replicas, slot_expert);
  rec.rank = 1, rec.own = own;
  slot_expert[5] = slot_expert[3]; /* expert 2 twice on rank 1 */
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "expert 2 has 2 replicas on rank 1");
  plog_make(&rec, 7, loads, replicas, slot_expert);
  rec.rank = 1, rec.own = own;
  replicas[0] += 1;
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "replica count");
  plog_make(&rec, 7, loads, replicas, slot_expert);
  rec.rank = PG, rec.own = own; /* no such rank */
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "written by rank 2 of G 2");
  rec.rank = 1, own[3] = loads[3] + 1; /* more than every rank together */
  m = smoe_plog_encode(&rec, c, cap, &err);
  expect_decode_fails(c, m, "more than its load");
  own[3] = loads[3] / 3;
  /* versions 2 and 1 (no checksum) are still read, and still checked */
  uint8_t old[512];
  size_t n2 = plog_v2(&rec, old);
  assert_int_equal(smoe_plog_decode(&back, old, n2, &err), 0);
  assert_true(smoe_plog_fingerprint(&back) == fp);
  assert_null(back.own);
  smoe_plog_free(&back);
  old[0] = 1;
  assert_int_equal(smoe_plog_decode(&back, old, n2 - 8, &err), 0);
  assert_true(smoe_plog_fingerprint(&back) == fp);
  smoe_plog_free(&back);
  old[0] = 2;
  expect_decode_fails(old, n2 - 1, "make"); /* "N bytes; L .. make M" */
  /* the fingerprint follows the placement */
  slot_expert[5] = slot_expert[4], slot_expert[4] = -1; /* rank 1's extra replica moves a slot */
  m = smoe_plog_encode(&rec, c, cap, &err);
  assert_int_equal(smoe_plog_decode(&back, c, m, &err), 0);
  assert_true(smoe_plog_fingerprint(&back) != fp);
  smoe_plog_free(&back);
  free(b), free(c);
}

/* --- fixed defects ------------------------------------------------------------- */

/* Complete checkpoints that all fail to restore: resume is an error (it used
 * to start afresh, leaving markers of the abandoned run that made prune()
 * delete the first new checkpoint as soon as it was agreed on); a fresh
 * start deletes them, and its own checkpoints are kept. */
static void test_unrestorable_then_fresh(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 2);
  for (int64_t s = 10; s <= 11; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
    agree(ck, 1);
  }
  close_ck(f, ck);
  smoe_store_t *s = store_open(f);
  flip_chunk_byte(s, 10, 0);
  flip_chunk_byte(s, 11, 0);
  store_close(f, s);

  ck = open_ck(f, 1, 2);
  smoe_err_t err = {{0}};
  int64_t step = 0;
  /* complete checkpoints exist but none restores: an error, nothing deleted */
  assert_int_equal(smoe_ckpt_resume(ck, f->comm, -1, INT64_MAX, NULL, NULL, &step, &err), -1);
  assert_non_null(strstr(err.msg, "none can be restored"));
  int removed = 0; /* the user starts afresh instead */
  assert_int_equal(smoe_ckpt_start_fresh(ck, &removed, &err), 0);
  assert_int_equal(removed, 2);
  nudge(f, 1);
  checkpoint(f, ck, 1);
  agree(ck, 1);
  int n = 0, found = 0;
  smoe_ckpt_info_t *v = list(smoe_ckpt_store(ck), &n);
  for (int i = 0; i < n; i++) found |= v[i].step == 1;
  free(v);
  if (!found) print_error("the new run's checkpoint of step 1 was pruned right after agreement\n");
  assert_true(found);
  close_ck(f, ck);
  ck = open_ck(f, 1, 2);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  expect_state(f, 1);
  close_ck(f, ck);
}

/* A resumed run with another chunk size (checkpoint.chunk_mb) writes a delta
 * on a checkpoint of the old chunk size; finish says it is complete, but its
 * chain "changes layout" and it never restores. */
static void test_chunk_size_change(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 3, 2);
  checkpoint(f, ck, 1);
  agree(ck, 1);
  close_ck(f, ck);

  ck = open_with(f, SHAPES, 2, BIG_BYTES, 3, 2, CHUNK / 2);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  nudge(f, 2);
  checkpoint(f, ck, 2);
  agree(ck, 1);
  verify_ok(smoe_ckpt_store(ck), 2);
  close_ck(f, ck);
  ck = open_with(f, SHAPES, 2, BIG_BYTES, 3, 2, CHUNK / 2);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 2);
  expect_state(f, 2);
  close_ck(f, ck);
}

/* The manifest of a resumed step deleted (damage), its 'g' record left: after
 * resume falls back, the step written again counts as globally complete before
 * any agreement. */
static void test_stale_global_record(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 10);
  for (int64_t s = 1; s <= 2; s++) {
    nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
    agree(ck, 1);
  }
  close_ck(f, ck);
  smoe_store_t *s = store_open(f);
  uint8_t k[9];
  manifest_key(k, 2);
  delete_ok(s, SMOE_CF_META, k, sizeof k);
  store_close(f, s);

  ck = open_ck(f, 1, 10);
  assert_int_equal(resume_ok(f, ck, -1), 1);
  nudge(f, 2);
  checkpoint(f, ck, 2); /* written here, not agreed on */
  int n = 0;
  smoe_ckpt_info_t *v = list(smoe_ckpt_store(ck), &n);
  const int global = n == 2 && v[1].step == 2 ? v[1].global : -1;
  free(v);
  assert_int_equal(n, 2);
  if (global) print_error("step 2 is listed globally complete before any agreement\n");
  assert_int_equal(global, 0);
  close_ck(f, ck);
}

/* Offsets in a manifest value (ckpt.c manifest_encode): the fixed header is 84
 * bytes, then u32 n_shapes, 32 bytes a shape, u32 n_regions, 38 bytes a region
 * followed by 25 bytes a chunk (u8 enc, u64 raw, stored, hash). */
static size_t manifest_chunk_at(const uint8_t *v, size_t n, int region, uint32_t chunk) {
  size_t at = 84;
  uint32_t n_shapes = (uint32_t)v[at] | (uint32_t)v[at + 1] << 8;
  at += 4 + 32 * (size_t)n_shapes + 4;
  for (int r = 0; r < region; r++) {
    uint32_t nc = (uint32_t)v[at + 34] | (uint32_t)v[at + 35] << 8;
    at += 38 + 25 * (size_t)nc;
  }
  at += 38 + 25 * (size_t)chunk;
  assert_true(at + 25 <= n - 8);
  return at;
}
static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A manifest whose checksum is right (it is not a MAC) but whose chunk is larger
 * than its region: decode_chain writes it past the end of its output buffer
 * (manifest_decode never checks a chunk's raw length against the region's). */
static void test_manifest_chunk_raw_checked(void **state) {
  fx_t *f = *state;
  smoe_ckpt_t *ck = open_ck(f, 1, 2);
  checkpoint(f, ck, 1);
  close_ck(f, ck);

  smoe_store_t *s = store_open(f);
  /* the tiny region's chunk replaced by one of 4096 bytes */
  enum { RAW = 4096 };
  uint8_t data[RAW];
  for (int i = 0; i < RAW; i++) data[i] = (uint8_t)(i * 7);
  size_t cap = smoe_codec_bound(RAW);
  uint8_t *chunk = malloc(cap);
  smoe_err_t err = {{0}};
  int64_t l = smoe_codec_encode(SMOE_ENC_SHUFFLE_ZSTD, 1, data, NULL, RAW, 8, chunk, cap, &err);
  assert_true(l > 0);
  uint8_t ck_key[13];
  chunk_key(ck_key, 1, R_TINY, 0);
  put_ok(s, SMOE_CF_DATA, ck_key, sizeof ck_key, chunk, (size_t)l);
  /* the manifest made to agree, checksum and all */
  uint8_t k[9];
  manifest_key(k, 1);
  size_t n = 0;
  uint8_t *m = get_ok(s, SMOE_CF_META, k, sizeof k, &n);
  size_t at = manifest_chunk_at(m, n, R_TINY, 0);
  m[at] = SMOE_ENC_SHUFFLE_ZSTD;
  put_le64(m + at + 1, RAW);
  put_le64(m + at + 9, (uint64_t)l);
  put_le64(m + at + 17, smoe_codec_hash(chunk, (size_t)l));
  put_le64(m + n - 8, smoe_codec_hash(m, n - 8));
  put_ok(s, SMOE_CF_META, k, sizeof k, m, n);
  free(m), free(chunk);
  store_close(f, s);

  /* verify in a child process: the overrun may abort it */
  char exe[4096];
  ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
  assert_true(el > 0);
  exe[el] = '\0';
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execl(exe, exe, "--verify", f->ckdir, "1", (char *)NULL);
    _exit(127);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    print_error(
        "verify of a manifest whose chunk (4096 bytes) exceeds its region (24 bytes): %s %d "
        "(0 = refused, 3 = accepted, else crashed)\n",
        WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The child of test_manifest_chunk_raw_checked: 0 if verify refuses, 3 if it accepts. */
static int verify_child(const char *dir, const char *step) {
  alarm(60);
  smoe_err_t err = {{0}};
  smoe_store_t *s = smoe_store_open_readonly(dir, 0, &err);
  if (!s) {
    fprintf(stderr, "test_ckpt --verify: %s\n", err.msg);
    return 2;
  }
  int rc = smoe_ckpt_verify(s, strtoll(step, NULL, 10), &err);
  if (rc != 0) fprintf(stderr, "test_ckpt --verify (refused, as it should): %s\n", err.msg);
  smoe_store_close(s);
  return rc != 0 ? 0 : 3;
}


/* --- copies on another rank (bundles) --------------------------------------- */

/* Each checkpoint's bundle applied to a copy store: the copy restores every
 * step exactly (a delta chain included) after the rank's own store is gone;
 * a damaged bundle (a flipped byte, cut short, not a bundle) is refused
 * before anything of it is written. */
static void test_copy_bundles(void **state) {
  fx_t *f = *state;
  make_bundles = 1;
  smoe_ckpt_t *ck = open_ck(f, 3, 100);
  smoe_ckpt_opts_t o = opts(3, 100, CHUNK);
  smoe_err_t err = {{0}};
  smoe_ckpt_t *copy = smoe_ckpt_open_copy(f->ckdir, 0, &o, &err);
  assert_non_null(copy);
  void *keep = NULL;
  size_t keep_n = 0;
  for (int64_t s = 1; s <= 4; s++) {
    if (s > 1) nudge(f, (uint64_t)s);
    checkpoint(f, ck, s);
    void *buf;
    size_t n;
    assert_int_equal(smoe_ckpt_take_bundle(ck, &buf, &n), 1);
    void *again;
    size_t again_n;
    assert_int_equal(smoe_ckpt_take_bundle(ck, &again, &again_n), 0); /* taken once */
    smoe_ckpt_copy_write(copy, buf, n);
    if (smoe_ckpt_copy_status(copy, &err) != 1) print_error("copy: %s\n", err.msg);
    assert_int_equal(smoe_ckpt_copy_status(copy, &err), 1);
    assert_int_equal(smoe_ckpt_pending(copy), s);
    agree(ck, 1);
    agree(copy, 1);
    if (s == 4) keep = buf, keep_n = n;
    else free(buf);
  }
  /* damaged bundles: refused, the copy unchanged */
  uint8_t *bad = malloc(keep_n);
  memcpy(bad, keep, keep_n);
  bad[keep_n / 2] ^= 0x10;
  int64_t step;
  assert_int_equal(smoe_ckpt_apply(copy, bad, keep_n, &step, &err), -1);
  assert_non_null(strstr(err.msg, "the copy of step 4 fails its checksum"));
  assert_int_equal(smoe_ckpt_apply(copy, keep, keep_n - 9, &step, &err), -1);
  memcpy(bad, "XXXX", 4);
  assert_int_equal(smoe_ckpt_apply(copy, bad, keep_n, &step, &err), -1);
  assert_non_null(strstr(err.msg, "not a checkpoint copy"));
  free(bad), free(keep);
  smoe_ckpt_close(copy);
  close_ck(f, ck);

  /* the rank's store is lost: rebuilt from the copy, every step restores */
  char own[160], copies[160];
  snprintf(own, sizeof own, "%s/rank-0", f->ckdir);
  assert_int_equal(nftw(own, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
  smoe_ckpt_copy_dir(f->ckdir, copies, sizeof copies);
  smoe_store_t *s = smoe_store_open_readonly(copies, 0, &err);
  assert_non_null(s);
  expect_steps(s, (int64_t[]){1, 2, 3, 4}, 4);
  void *all;
  size_t n;
  assert_int_equal(smoe_ckpt_bundle_store(s, &all, &n, &err), 0);
  smoe_store_close(s);
  assert_int_equal(smoe_ckpt_restore_copy(f->ckdir, 0, all, n, &err), 0);
  free(all);
  for (int64_t want = 4; want >= 1; want--) {
    ck = open_ck(f, 3, 100);
    scribble(f);
    assert_int_equal(resume_ok(f, ck, want), want);
    expect_state(f, want);
    close_ck(f, ck);
  }
  make_bundles = 0;
}

/* --- a full checkpoint streamed in ------------------------------------------ */

/* The state put in pieces of odd sizes (crossing chunk and region bounds)
 * restores exactly; a put past the end and an end short of it fail naming
 * the rank and step. */
static void test_stream(void **state) {
  fx_t *f = *state;
  smoe_ckpt_region_t r[N_REGIONS];
  regions(f, r, BIG_BYTES);
  smoe_ckpt_opts_t o = opts(1, 5, CHUNK);
  smoe_err_t err = {{0}};
  smoe_ckpt_t *ck = smoe_ckpt_open_stream(f->ckdir, 0, r, N_REGIONS, SHAPES, 2, 0x1234, &o, &err);
  assert_non_null(ck);
  snapshot(f, f->snap[3]);
  smoe_ckpt_stream_begin(ck, 3);
  for (size_t at = 0, piece = 1; at < TOTAL; at += piece, piece = piece * 3 + 7) {
    if (piece > TOTAL - at) piece = TOTAL - at;
    assert_int_equal(smoe_ckpt_stream_put(ck, f->snap[3] + at, piece, &err), 0);
  }
  assert_int_equal(smoe_ckpt_stream_end(ck, &err), 0);
  assert_int_equal(smoe_ckpt_local_status(ck), 1);
  agree(ck, 1);
  smoe_ckpt_stream_begin(ck, 4); /* one byte too many */
  assert_int_equal(smoe_ckpt_stream_put(ck, f->snap[3], TOTAL, &err), 0);
  assert_int_equal(smoe_ckpt_stream_put(ck, f->snap[3], 1, &err), -1);
  assert_non_null(strstr(err.msg, "rank 0, checkpoint of step 4: 1 bytes past the end"));
  assert_int_equal(smoe_ckpt_stream_end(ck, &err), -1);
  agree(ck, -1);
  smoe_ckpt_stream_begin(ck, 5); /* short */
  assert_int_equal(smoe_ckpt_stream_put(ck, f->snap[3], 100, &err), 0);
  assert_int_equal(smoe_ckpt_stream_end(ck, &err), -1);
  assert_non_null(strstr(err.msg, "rank 0, checkpoint of step 5: region big is short"));
  agree(ck, -1);
  smoe_ckpt_close(ck);
  ck = open_ck(f, 1, 5);
  scribble(f);
  assert_int_equal(resume_ok(f, ck, -1), 3);
  expect_state(f, 3);
  close_ck(f, ck);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--verify") == 0) return verify_child(argv[2], argv[3]);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_full_round_trip),    T(test_delta_chain),
      T(test_agree_and_prune),    T(test_resume_empty),
      T(test_shape_mismatch),     T(test_corrupt_chunk),
      T(test_deleted_manifest),   T(test_truncated_manifest),
      T(test_missing_base_chunk), T(test_placement_log),
      cmocka_unit_test(test_placement_record_checks),
      T(test_placement_log_budget),
      T(test_unrestorable_then_fresh),  T(test_chunk_size_change),
      T(test_stale_global_record), T(test_manifest_chunk_raw_checked),
      T(test_copy_bundles),        T(test_stream),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
