/* test_data.c: data loading (default fortunes corpus, text files and folders,
 * llm.c .bin), the hash split, (seed, step) sampling, and every load error. */
#define _XOPEN_SOURCE 700
/* cmocka.h needs these four first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

#define SEQ 64
#define VF 0.05

/* ---- fixtures --------------------------------------------------------------- */

static smoe_data_t corpus; /* the default corpus, loaded once for the group */

static int corpus_setup(void **state) {
  (void)state;
  smoe_err_t err = {{0}};
  if (smoe_data_load(&corpus, "", VF, SEQ, &err) != 0) {
    fprintf(stderr, "default corpus: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static int corpus_teardown(void **state) {
  (void)state;
  smoe_data_free(&corpus);
  return 0;
}

static int dir_setup(void **state) {
  char *dir = malloc(64);
  assert_non_null(dir);
  strcpy(dir, "/tmp/smoe_test_data_XXXXXX");
  assert_non_null(mkdtemp(dir));
  *state = dir;
  return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

static int dir_teardown(void **state) {
  char *dir = *state;
  int rc = nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
  return rc;
}

/* "dir/name" in a new string (caller frees). */
static char *path_in(const char *dir, const char *name) {
  char *p = malloc(strlen(dir) + strlen(name) + 2);
  assert_non_null(p);
  sprintf(p, "%s/%s", dir, name);
  return p;
}

/* Writes n bytes to dir/name (name may go through existing subfolders); returns the path. */
static char *write_file(const char *dir, const char *name, const void *b, size_t n) {
  char *p = path_in(dir, name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
  return p;
}

static char *write_str(const char *dir, const char *name, const char *s) {
  return write_file(dir, name, s, strlen(s));
}

/* Writes an llm.c .bin: 256 int32 header words (little-endian) and uint16 tokens. */
static char *write_bin(const char *dir, const char *name, uint32_t magic, uint32_t version,
                       uint32_t count, const uint16_t *tok, size_t n_tok) {
  size_t n = 1024 + 2 * n_tok;
  unsigned char *b = calloc(n, 1);
  assert_non_null(b);
  uint32_t h[3] = {magic, version, count};
  for (int w = 0; w < 3; w++)
    for (int k = 0; k < 4; k++) b[4 * w + k] = (unsigned char)(h[w] >> (8 * k));
  for (size_t i = 0; i < n_tok; i++) {
    b[1024 + 2 * i] = (unsigned char)(tok[i] & 0xff);
    b[1024 + 2 * i + 1] = (unsigned char)(tok[i] >> 8);
  }
  char *p = write_file(dir, name, b, n);
  free(b);
  return p;
}

/* Loads path expecting failure; checks the message names the path and holds phrase. */
static void expect_error(const char *path, double vf, int seq_len, const char *phrase) {
  smoe_data_t d;
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_data_load(&d, path, vf, seq_len, &err), -1);
  if (!strstr(err.msg, path) || !strstr(err.msg, phrase))
    fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err.msg, path, phrase);
  assert_null(d.train);
  assert_null(d.val);
}

static void load_ok(smoe_data_t *d, const char *path, double vf, int seq_len) {
  smoe_err_t err = {{0}};
  if (smoe_data_load(d, path, vf, seq_len, &err) != 0) fail_msg("load %s: %s", path, err.msg);
}

/* Text of a token array (byte tokens) as a NUL-terminated string. */
static char *as_text(const int32_t *t, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++) {
    assert_in_range(t[i], 1, 255);
    s[i] = (char)t[i];
  }
  s[n] = '\0';
  return s;
}

static int contains(const int32_t *hay, size_t n, const int32_t *needle, size_t m) {
  for (size_t i = 0; i + m <= n; i++)
    if (hay[i] == needle[0] && memcmp(hay + i, needle, m * sizeof *hay) == 0) return 1;
  return 0;
}

/* ---- mixing ----------------------------------------------------------------- */

static void test_mix64_is_splitmix64(void **state) {
  (void)state;
  /* The first two outputs of splitmix64 seeded with 0. */
  assert_true(smoe_mix64(0) == 0xE220A8397B1DCDAFull);
  assert_true(smoe_mix64(0x9E3779B97F4A7C15ull) == 0x6E789E6AA1B965F4ull);
}

/* ---- default corpus ----------------------------------------------------------- */

static void test_default_corpus_sizes(void **state) {
  (void)state;
  size_t total = corpus.n_train + corpus.n_val;
  assert_in_range(corpus.n_files, 30, 60);
  assert_int_equal(corpus.vocab_size, 256);
  assert_in_range(total, 2500000, 2900000);
  double frac = (double)corpus.n_val / (double)total;
  if (frac < 0.03 || frac > 0.07) fail_msg("val fraction %.4f", frac);
  for (size_t i = 0; i < corpus.n_train; i++) assert_in_range(corpus.train[i], 1, 255);
  for (size_t i = 0; i < corpus.n_val; i++) assert_in_range(corpus.val[i], 1, 255);
  /* Each split is records, each followed by a "%" line, like a fortune file. */
  const int32_t tail[3] = {'\n', '%', '\n'};
  assert_memory_equal(corpus.train + corpus.n_train - 3, tail, sizeof tail);
  assert_memory_equal(corpus.val + corpus.n_val - 3, tail, sizeof tail);
}

static void test_default_corpus_deterministic(void **state) {
  (void)state;
  smoe_data_t again;
  load_ok(&again, "", VF, SEQ);
  assert_int_equal(again.n_train, corpus.n_train);
  assert_int_equal(again.n_val, corpus.n_val);
  assert_memory_equal(again.train, corpus.train, corpus.n_train * sizeof(int32_t));
  assert_memory_equal(again.val, corpus.val, corpus.n_val * sizeof(int32_t));
  smoe_data_free(&again);
}

/* ---- sampling ------------------------------------------------------------------- */

static void test_train_batch_split_independent(void **state) {
  (void)state;
  size_t w = SEQ + 1;
  int32_t *all = malloc(16 * w * sizeof(int32_t)), *parts = malloc(16 * w * sizeof(int32_t));
  int32_t *again = malloc(16 * w * sizeof(int32_t));
  assert_true(all && parts && again);
  smoe_data_train_batch(&corpus, 1234, 7, 0, 16, SEQ, all);
  smoe_data_train_batch(&corpus, 1234, 7, 0, 8, SEQ, parts);
  smoe_data_train_batch(&corpus, 1234, 7, 8, 8, SEQ, parts + 8 * w);
  assert_memory_equal(all, parts, 16 * w * sizeof(int32_t));
  smoe_data_train_batch(&corpus, 1234, 7, 0, 16, SEQ, again);
  assert_memory_equal(all, again, 16 * w * sizeof(int32_t));
  /* Windows within a step differ, and so do other steps and seeds. */
  assert_memory_not_equal(all, all + w, w * sizeof(int32_t));
  smoe_data_train_batch(&corpus, 1234, 8, 0, 16, SEQ, again);
  assert_memory_not_equal(all, again, 16 * w * sizeof(int32_t));
  smoe_data_train_batch(&corpus, 1235, 7, 0, 16, SEQ, again);
  assert_memory_not_equal(all, again, 16 * w * sizeof(int32_t));
  for (int i = 0; i < 16; i++)
    if (!contains(corpus.train, corpus.n_train, all + i * w, w))
      fail_msg("window %d is not a substring of the train split", i);
  free(all);
  free(parts);
  free(again);
}

/* With tokens 0..N-1 a window's first token is its start: every valid start
 * must come up, nothing past the last, and roughly uniformly. */
static void test_train_batch_covers_all_starts(void **state) {
  enum { N = 1000, T = 7, STEPS = 400, B = 64 };
  uint16_t tok[N];
  for (int i = 0; i < N; i++) tok[i] = (uint16_t)i;
  char *p = write_bin(*state, "seq.bin", SMOE_LLMC_MAGIC, 1, N, tok, N);
  smoe_data_t d;
  load_ok(&d, p, 0.1, T);
  assert_int_equal(d.n_train, 900);
  size_t n_starts = d.n_train - T;
  int hits[900] = {0};
  int32_t out[B * (T + 1)];
  for (int s = 0; s < STEPS; s++) {
    smoe_data_train_batch(&d, 42, s, 0, B, T, out);
    for (int w = 0; w < B; w++) {
      int32_t *win = out + w * (T + 1);
      assert_in_range(win[0], 0, n_starts - 1);
      for (int j = 1; j <= T; j++) assert_int_equal(win[j], win[0] + j);
      hits[win[0]]++;
    }
  }
  double mean = (double)(STEPS * B) / (double)n_starts; /* about 28.7 */
  for (size_t i = 0; i < n_starts; i++)
    if (hits[i] < mean / 4 || hits[i] > mean * 2.2)
      fail_msg("start %zu drawn %d times", i, hits[i]);
  smoe_data_free(&d);
  free(p);
}

static void test_val_windows_consecutive(void **state) {
  (void)state;
  int64_t count = smoe_data_val_windows(&corpus, SEQ);
  assert_int_equal(count, corpus.n_val / (SEQ + 1));
  assert_true(count > 100);
  int32_t out[SEQ + 1], first[SEQ + 1];
  for (int64_t i = 0; i < count; i += count / 7) {
    smoe_data_val_window(&corpus, i, SEQ, out);
    assert_memory_equal(out, corpus.val + i * (SEQ + 1), sizeof out);
  }
  smoe_data_val_window(&corpus, 0, SEQ, first);
  smoe_data_val_window(&corpus, count, SEQ, out); /* wraps around */
  assert_memory_equal(out, first, sizeof out);
}

/* ---- text files ---------------------------------------------------------------- */

/* Marks each "<word> K\n" + suffix found in s; fails on anything else. */
static void parse_records(const char *s, const char *word, const char *suffix, int *seen, int n) {
  size_t wl = strlen(word), sl = strlen(suffix);
  while (*s) {
    int k = -1, used = 0;
    if (strncmp(s, word, wl) != 0 || sscanf(s + wl, " %d%n", &k, &used) != 1 ||
        s[wl + (size_t)used] != '\n')
      fail_msg("unexpected text at \"%.20s\"", s);
    assert_in_range(k, 0, n - 1);
    seen[k]++;
    s += wl + (size_t)used + 1;
    if (strncmp(s, suffix, sl) != 0) fail_msg("record %d not followed by the separator", k);
    s += sl;
  }
}

static void test_fortune_records_split_by_hash(void **state) {
  enum { N = 400 };
  char *fwd = malloc(N * 32), *rev = malloc(N * 32 + 16);
  assert_true(fwd && rev);
  size_t a = 0, b = (size_t)sprintf(rev, "%%\r\n"); /* leading empty record, CRLF separator */
  for (int i = 0; i < N; i++) {
    /* the last record ends the file without a newline: the split adds one */
    a += (size_t)sprintf(fwd + a, i == N - 1 ? "record %d" : "record %d\n%%\n", i);
    b += (size_t)sprintf(rev + b, "record %d\n%%\n", N - 1 - i);
  }
  char *pf = write_file(*state, "fwd", fwd, a), *pr = write_file(*state, "rev", rev, b);
  smoe_data_t d, e;
  load_ok(&d, pf, 0.1, 8);
  load_ok(&e, pr, 0.1, 8);
  int seen[N] = {0}, val_d[N] = {0}, val_e[N] = {0};
  char *t = as_text(d.train, d.n_train), *v = as_text(d.val, d.n_val);
  parse_records(t, "record", "%\n", seen, N);
  parse_records(v, "record", "%\n", val_d, N);
  int n_val = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(seen[i] + val_d[i], 1); /* every record once, in one split */
    n_val += val_d[i];
  }
  assert_in_range(n_val, 15, 70); /* about 40 */
  free(v);
  v = as_text(e.val, e.n_val);
  parse_records(v, "record", "%\n", val_e, N);
  assert_memory_equal(val_d, val_e, sizeof val_d); /* same records, whatever the order */
  free(t);
  t = as_text(e.train, e.n_train);
  memset(seen, 0, sizeof seen);
  parse_records(t, "record", "%\n", seen, N);
  for (int i = 0; i < N; i++) assert_int_equal(seen[i] + val_e[i], 1);
  free(t), free(v), free(fwd), free(rev), free(pf), free(pr);
  smoe_data_free(&d);
  smoe_data_free(&e);
}

static void test_plain_text_paragraphs(void **state) {
  enum { N = 300 };
  char *txt = malloc(N * 48);
  assert_non_null(txt);
  size_t n = 0;
  for (int i = 0; i < N; i++) n += (size_t)sprintf(txt + n, "paragraph %d\nsecond line.\n\n", i);
  char *p = write_file(*state, "plain.txt", txt, n);
  smoe_data_t d;
  load_ok(&d, p, 0.1, 8);
  assert_int_equal(d.n_train + d.n_val, n); /* paragraphs verbatim, no separators added */
  assert_int_equal(d.n_files, 1);
  int seen[N] = {0};
  char *t = as_text(d.train, d.n_train), *v = as_text(d.val, d.n_val);
  parse_records(t, "paragraph", "second line.\n\n", seen, N);
  parse_records(v, "paragraph", "second line.\n\n", seen, N);
  for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
  free(t), free(v), free(txt), free(p);
  smoe_data_free(&d);
}

/* One paragraph cannot be split by hash: the last val_fraction of bytes is validation. */
static void test_plain_text_single_paragraph(void **state) {
  char txt[2001];
  for (int i = 0; i < 2000; i++) txt[i] = i % 50 == 49 ? '\n' : (char)('a' + i % 26);
  txt[2000] = '\0';
  char *p = write_file(*state, "one", txt, 2000);
  smoe_data_t d;
  load_ok(&d, p, 0.1, 16);
  assert_int_equal(d.n_val, 200);
  assert_int_equal(d.n_train, 1800); /* byte 1799 is a '\n': none added */
  char *t = as_text(d.train, d.n_train), *v = as_text(d.val, d.n_val);
  assert_memory_equal(t, txt, 1800);
  assert_memory_equal(v, txt + 1800, 200);
  free(t), free(v), free(p);
  smoe_data_free(&d);
}

static void test_folder(void **state) {
  const char *dir = *state;
  char big[4096];
  size_t n = 0;
  for (int i = 0; i < 100; i++) n += (size_t)sprintf(big + n, "fortune %d\n%%\n", i);
  char *sub = path_in(dir, "sub");
  assert_int_equal(mkdir(sub, 0700), 0);
  char *files[] = {
      write_file(dir, "a", big, n),
      write_str(dir, "sub/b.txt", "a second file\n%\nwith two records\n"),
      write_file(dir, "a.dat", "\0\0\0\2", 4),   /* strfile index of "a": skipped */
      write_file(dir, ".hidden", "\0\0\0\0", 4), /* dot name: skipped */
  };
  char *link = path_in(dir, "a.u8");
  assert_int_equal(symlink("a", link), 0);
  free(link);
  link = path_in(dir, "z");
  assert_int_equal(symlink("/etc/passwd", link), 0); /* symlink: skipped */
  smoe_data_t d;
  load_ok(&d, dir, 0.2, 8);
  assert_int_equal(d.n_files, 2);
  assert_int_equal(d.n_train + d.n_val, n + 35); /* b.txt: 14 + 2 + 17 + 2 */
  smoe_data_free(&d);
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) free(files[i]);
  free(sub), free(link);
}

/* ---- llm.c .bin --------------------------------------------------------------- */

static void test_bin_valid(void **state) {
  enum { N = 3000 };
  uint16_t tok[N];
  for (int i = 0; i < N; i++) tok[i] = (uint16_t)((i * 37) % 5003);
  char *p = write_bin(*state, "tok.bin", SMOE_LLMC_MAGIC, 1, N, tok, N);
  smoe_data_t d;
  load_ok(&d, p, 0.1, 16);
  assert_int_equal(d.n_train, 2700);
  assert_int_equal(d.n_val, 300);
  assert_int_equal(d.vocab_size, 5003);
  for (int i = 0; i < N; i++) assert_int_equal(i < 2700 ? d.train[i] : d.val[i - 2700], tok[i]);
  smoe_data_free(&d);
  /* Detected by magic whatever the name; val holds at least one window. */
  char *q = write_bin(*state, "tokens.dat", SMOE_LLMC_MAGIC, 1, N, tok, N);
  load_ok(&d, q, 0.001, 99);
  assert_int_equal(d.n_val, 100);
  assert_int_equal(d.n_train, N - 100);
  assert_int_equal(d.train[5], tok[5]);
  smoe_data_free(&d);
  free(p), free(q);
}

static void test_bin_errors(void **state) {
  const char *dir = *state;
  uint16_t tok[100] = {0};
  char *p = write_bin(dir, "magic.bin", 12345, 1, 100, tok, 100);
  expect_error(p, VF, 8, "bad magic 12345 (expected 20240520");
  free(p);
  p = write_bin(dir, "version.bin", SMOE_LLMC_MAGIC, 2, 100, tok, 100);
  expect_error(p, VF, 8, "version 2 (expected 1)");
  free(p);
  p = write_bin(dir, "short.bin", SMOE_LLMC_MAGIC, 1, 100, tok, 50);
  expect_error(p, VF, 8, "truncated: header says 100 tokens, file holds 50");
  free(p);
  p = write_bin(dir, "long.bin", SMOE_LLMC_MAGIC, 1, 50, tok, 100);
  expect_error(p, VF, 8, "100 trailing bytes");
  free(p);
  p = write_str(dir, "tiny.bin", "not a header");
  expect_error(p, VF, 8, "shorter than the 1024-byte header");
  free(p);
  p = write_bin(dir, "few.bin", SMOE_LLMC_MAGIC, 1, 20, tok, 20);
  expect_error(p, VF, 16, "too little data");
  free(p);
  /* A .bin inside a folder of text is an error, not text. */
  char *sub = path_in(dir, "sub");
  assert_int_equal(mkdir(sub, 0700), 0);
  p = write_bin(sub, "x.bin", SMOE_LLMC_MAGIC, 1, 100, tok, 100);
  expect_error(sub, VF, 8, "llm.c .bin token file");
  free(p), free(sub);
}

/* ---- text errors ------------------------------------------------------------------ */

static void test_text_errors(void **state) {
  const char *dir = *state;
  char *missing = path_in(dir, "missing");
  expect_error(missing, VF, 8, "No such file or directory");
  free(missing);

  char *empty = path_in(dir, "empty");
  assert_int_equal(mkdir(empty, 0700), 0);
  expect_error(empty, VF, 8, "no text files under");
  char *hidden = write_str(empty, ".only_hidden", "text\n");
  expect_error(empty, VF, 8, "no text files under");
  free(hidden), free(empty);

  char *bin = write_file(dir, "nul.txt", "hello\0world\n", 12);
  expect_error(bin, VF, 8, "is not a text file (binary byte 0x00 at offset 5)");
  free(bin);

  char ctl[200];
  memset(ctl, 'x', sizeof ctl);
  ctl[10] = 0x01, ctl[20] = 0x02, ctl[30] = 0x03; /* 1.5% control bytes */
  char *c = write_file(dir, "ctl.txt", ctl, sizeof ctl);
  expect_error(c, VF, 8, "control characters");
  ctl[30] = 'x'; /* 1%: still text */
  free(c);
  c = write_file(dir, "ctl_ok.txt", ctl, sizeof ctl);
  smoe_data_t d;
  load_ok(&d, c, 0.1, 8);
  smoe_data_free(&d);
  free(c);

  char *small = write_str(dir, "small.txt", "hello\n\nworld\n");
  expect_error(small, VF, 64, "too little data for model.seq_len 64");
  expect_error(small, VF, 64, "use a smaller model.seq_len");
  free(small);

  smoe_err_t err = {{0}};
  assert_int_equal(smoe_data_load(&d, "", 1.5, 8, &err), -1);
  assert_non_null(strstr(err.msg, "data.val_fraction"));
}

int main(void) {
  const struct CMUnitTest corpus_tests[] = {
      cmocka_unit_test(test_mix64_is_splitmix64),
      cmocka_unit_test(test_default_corpus_sizes),
      cmocka_unit_test(test_default_corpus_deterministic),
      cmocka_unit_test(test_train_batch_split_independent),
      cmocka_unit_test(test_val_windows_consecutive),
  };
  const struct CMUnitTest file_tests[] = {
      cmocka_unit_test_setup_teardown(test_train_batch_covers_all_starts, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_fortune_records_split_by_hash, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_plain_text_paragraphs, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_plain_text_single_paragraph, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_folder, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_bin_valid, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_bin_errors, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_text_errors, dir_setup, dir_teardown),
  };
  int failed =
      cmocka_run_group_tests_name("data_corpus", corpus_tests, corpus_setup, corpus_teardown);
  failed += cmocka_run_group_tests_name("data_files", file_tests, NULL, NULL);
  return failed ? 1 : 0;
}
