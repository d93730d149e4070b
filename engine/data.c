/* data.c: loads byte-level text or an llm.c .bin token file into train and
 * validation token arrays, and samples training windows from (seed, step).
 * The record format, split rule and skip rules are described in data.h. */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#define LLMC_HEADER_WORDS 256
#define LLMC_HEADER_BYTES (LLMC_HEADER_WORDS * 4)
#define VAL_SCALE 1000000u /* a record's hash mod VAL_SCALE is compared with the threshold */


/* ---- growable token array ---------------------------------------------- */

typedef struct {
  int32_t *p;
  size_t n, cap;
} tokvec_t;

static void vec_push(tokvec_t *v, const unsigned char *b, size_t n) {
  if (n > v->cap - v->n) {
    size_t cap = v->cap ? v->cap : 1 << 16;
    while (cap - v->n < n) cap = smoe_mul(cap, 2);
    int32_t *p = xmalloc(smoe_mul(cap, sizeof *p));
    if (v->n) memcpy(p, v->p, v->n * sizeof *p);
    free(v->p);
    v->p = p;
    v->cap = cap;
  }
  for (size_t i = 0; i < n; i++) v->p[v->n + i] = b[i];
  v->n += n;
}

/* ---- reading ------------------------------------------------------------ */

/* Reads the whole file into a new buffer (caller frees *out). */
static int read_file(const char *path, unsigned char **out, size_t *len, smoe_err_t *err) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return smoe_fail(err, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    fclose(f);
    return smoe_fail(err, "cannot stat %s: %s", path, strerror(e));
  }
  /* The size is only a hint: the loop reads until EOF, growing if needed. */
  size_t cap = (st.st_size > 0 ? (size_t)st.st_size : 0) + 1, n = 0;
  unsigned char *buf = xmalloc(cap);
  for (;;) {
    if (n == cap) {
      size_t bigger = smoe_mul(cap, 2);
      unsigned char *p = xmalloc(bigger);
      memcpy(p, buf, n);
      free(buf);
      buf = p;
      cap = bigger;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int e = errno;
  if (ferror(f)) {
    fclose(f);
    free(buf);
    return smoe_fail(err, "cannot read %s: %s", path, strerror(e));
  }
  if (fclose(f) != 0) {
    free(buf);
    return smoe_fail(err, "cannot close %s: %s", path, strerror(errno));
  }
  *out = buf;
  *len = n;
  return 0;
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- text: validation, records, split ------------------------------------ */

typedef struct {
  tokvec_t train, val;
  double val_fraction;
  uint64_t val_threshold; /* record -> val when hash % VAL_SCALE < this */
  int n_files;
  smoe_err_t *err;
} loader_t;

/* Control bytes that text may not hold: all below 0x20 except \t \n \v \f \r
 * and ESC (terminal escapes appear in fortune files), and DEL. */
static int is_control(unsigned char c) {
  if (c == 0x7f) return 1;
  if (c >= 0x20) return 0;
  return !(c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || c == 0x1b);
}

/* Rejects a file holding a NUL byte or more than 1% control bytes. */
static int check_text(const char *path, const unsigned char *b, size_t n, smoe_err_t *err) {
  if (n >= 4 && le32(b) == SMOE_LLMC_MAGIC)
    return smoe_fail(err,
                     "%s is an llm.c .bin token file, not text: give it as the data path on its "
                     "own, not inside a folder",
                     path);
  size_t n_ctl = 0, first_ctl = 0;
  for (size_t i = 0; i < n; i++) {
    if (b[i] == 0)
      return smoe_fail(err, "%s is not a text file (binary byte 0x00 at offset %zu)", path, i);
    if (is_control(b[i]) && n_ctl++ == 0) first_ctl = i;
  }
  if (n_ctl > n / 100)
    return smoe_fail(err,
                     "%s is not a text file (%zu of its %zu bytes are control characters, more "
                     "than 1%%; the first, 0x%02x, is at offset %zu)",
                     path, n_ctl, n, b[first_ctl], first_ctl);
  return 0;
}

typedef struct {
  size_t off, len;
  int val; /* 1: goes to validation */
} span_t;

static size_t line_end(const unsigned char *b, size_t n, size_t s) {
  const unsigned char *e = memchr(b + s, '\n', n - s);
  return e ? (size_t)(e - b) : n;
}

/* Splits b into non-empty records and returns their count. paragraphs == 0:
 * at lines that are exactly "%" (or "%\r"), which belong to no record; counts
 * those lines in *n_seps. paragraphs == 1: before each non-blank line that
 * follows a blank one, so the records put together are the whole file. */
static size_t split_records(const unsigned char *b, size_t n, int paragraphs, span_t *spans,
                            size_t *n_seps) {
  size_t ns = 0, rec = 0;
  int prev_blank = 0;
  *n_seps = 0;
  for (size_t s = 0; s < n;) {
    size_t e = line_end(b, n, s), next = e < n ? e + 1 : n, len = e - s;
    if (paragraphs) {
      int blank = len == 0 || (len == 1 && b[s] == '\r');
      if (!blank && prev_blank && s > rec) {
        spans[ns++] = (span_t){rec, s - rec, 0};
        rec = s;
      }
      prev_blank = blank;
    } else if (b[s] == '%' && (len == 1 || (len == 2 && b[s + 1] == '\r'))) {
      (*n_seps)++;
      if (s > rec) spans[ns++] = (span_t){rec, s - rec, 0};
      rec = next;
    }
    s = next;
  }
  if (n > rec) spans[ns++] = (span_t){rec, n - rec, 0};
  return ns;
}

/* FNV-1a 64 of the bytes, then mixed. */
static uint64_t hash_bytes(const unsigned char *b, size_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001B3ull;
  }
  return smoe_mix64(h);
}

/* Appends a piece of text, a '\n' if it lacks one, and "%\n" after a fortune record. */
static void emit(tokvec_t *v, const unsigned char *b, size_t n, int fortune) {
  if (n == 0) return;
  vec_push(v, b, n);
  if (b[n - 1] != '\n') vec_push(v, (const unsigned char *)"\n", 1);
  if (fortune) vec_push(v, (const unsigned char *)"%\n", 2);
}

static int add_text(loader_t *L, const char *path, const unsigned char *b, size_t n) {
  if (check_text(path, b, n, L->err)) return -1;
  size_t n_lines = 1;
  for (size_t s = 0; s < n; s = line_end(b, n, s) + 1) n_lines++;
  span_t *spans = xmalloc(smoe_mul(n_lines, sizeof *spans));
  size_t n_seps;
  size_t ns = split_records(b, n, 0, spans, &n_seps);
  int fortune = n_seps > 0;
  if (!fortune) ns = split_records(b, n, 1, spans, &n_seps);
  size_t n_to_val = 0;
  for (size_t i = 0; i < ns; i++) {
    spans[i].val = hash_bytes(b + spans[i].off, spans[i].len) % VAL_SCALE < L->val_threshold;
    n_to_val += (size_t)spans[i].val;
  }
  if (!fortune && (n_to_val == 0 || n_to_val == ns)) {
    /* Plain text whose paragraphs all fell on one side: split by position. */
    size_t n_val = (size_t)ceil((double)n * L->val_fraction);
    if (n_val > n) n_val = n;
    emit(&L->train, b, n - n_val, 0);
    emit(&L->val, b + (n - n_val), n_val, 0);
  } else {
    for (size_t i = 0; i < ns; i++)
      emit(spans[i].val ? &L->val : &L->train, b + spans[i].off, spans[i].len, fortune);
  }
  free(spans);
  L->n_files++;
  return 0;
}

static int add_text_file(loader_t *L, const char *path) {
  unsigned char *b;
  size_t n;
  if (read_file(path, &b, &n, L->err)) return -1;
  int rc = add_text(L, path, b, n);
  free(b);
  return rc;
}

/* ---- folders -------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* X.dat (strfile index) and X.u8 (UTF-8 alias) beside a file X are skipped. */
static int is_fortune_aux(const char *name, char **sorted, size_t n) {
  const char *suffix = ends_with(name, ".dat") ? ".dat" : ends_with(name, ".u8") ? ".u8" : NULL;
  if (!suffix) return 0;
  size_t stem_len = strlen(name) - strlen(suffix);
  char *stem = xmalloc(stem_len + 1);
  memcpy(stem, name, stem_len);
  stem[stem_len] = '\0';
  int found = bsearch(&stem, sorted, n, sizeof *sorted, cmp_names) != NULL;
  free(stem);
  return found;
}

static char *join_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = xmalloc(a + b + 2);
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

/* Reads the regular files of dir in sorted name order (subfolders too when
 * recurse), skipping dot names, symlinks and fortune .dat/.u8 companions. */
static int add_folder(loader_t *L, const char *dir, int recurse) {
  DIR *dp = opendir(dir);
  if (!dp) return smoe_fail(L->err, "cannot open folder %s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(dp);
    if (!de) break;
    if (de->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? smoe_mul(cap, 2) : 64;
      char **p = xmalloc(smoe_mul(cap, sizeof *p));
      if (n) memcpy(p, names, n * sizeof *p);
      free(names);
      names = p;
    }
    size_t len = strlen(de->d_name);
    names[n] = xmalloc(len + 1);
    memcpy(names[n++], de->d_name, len + 1);
  }
  int rc = 0;
  if (errno) rc = smoe_fail(L->err, "cannot list folder %s: %s", dir, strerror(errno));
  closedir(dp);
  if (n > 1) qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n && rc == 0; i++) {
    char *p = join_path(dir, names[i]);
    struct stat st;
    if (lstat(p, &st) != 0)
      rc = smoe_fail(L->err, "cannot stat %s: %s", p, strerror(errno));
    else if (S_ISDIR(st.st_mode) && recurse)
      rc = add_folder(L, p, recurse);
    else if (S_ISREG(st.st_mode) && !is_fortune_aux(names[i], names, n))
      rc = add_text_file(L, p);
    free(p);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

/* ---- llm.c .bin ------------------------------------------------------------ */

/* Validates an llm.c .bin image; sets *count to its token count. */
static int check_bin(const char *path, const unsigned char *b, size_t n, size_t *count,
                     smoe_err_t *err) {
  if (n < LLMC_HEADER_BYTES)
    return smoe_fail(err,
                     "%s: %zu bytes, shorter than the %d-byte header of an llm.c .bin token file",
                     path, n, LLMC_HEADER_BYTES);
  uint32_t magic = le32(b), version = le32(b + 4), tokens = le32(b + 8);
  if (magic != SMOE_LLMC_MAGIC)
    return smoe_fail(err, "%s: bad magic %" PRIu32 " (expected %d, an llm.c .bin token file)",
                     path, magic, SMOE_LLMC_MAGIC);
  if (version != 1)
    return smoe_fail(err, "%s: unsupported llm.c .bin version %" PRIu32 " (expected 1)", path,
                     version);
  size_t body = n - LLMC_HEADER_BYTES, need = smoe_mul(tokens, 2);
  if (body < need)
    return smoe_fail(err, "%s: truncated: header says %" PRIu32 " tokens, file holds %zu", path,
                     tokens, body / 2);
  if (body > need)
    return smoe_fail(err, "%s: %zu trailing bytes after the %" PRIu32 " tokens the header declares",
                     path, body - need, tokens);
  *count = tokens;
  return 0;
}

static int is_bin(const char *path, const unsigned char *b, size_t n) {
  return ends_with(path, ".bin") || (n >= 4 && le32(b) == SMOE_LLMC_MAGIC);
}

static int load_bin(loader_t *L, const char *path, const unsigned char *b, size_t n, int seq_len,
                    int *vocab_size) {
  size_t count;
  if (check_bin(path, b, n, &count, L->err) != 0) return -1;
  size_t n_val = (size_t)ceil((double)count * L->val_fraction);
  if (n_val < (size_t)seq_len + 1) n_val = (size_t)seq_len + 1;
  if (n_val > count) n_val = count;
  size_t n_train = count - n_val;
  tokvec_t *dst[2] = {&L->train, &L->val};
  size_t len[2] = {n_train, n_val};
  const unsigned char *t = b + LLMC_HEADER_BYTES;
  int32_t max_token = -1;
  for (int s = 0; s < 2; s++) {
    dst[s]->p = xmalloc(smoe_mul(len[s], sizeof(int32_t)));
    dst[s]->n = dst[s]->cap = len[s];
    for (size_t i = 0; i < len[s]; i++, t += 2) {
      int32_t tok = (int32_t)t[0] | (int32_t)t[1] << 8;
      dst[s]->p[i] = tok;
      if (tok > max_token) max_token = tok;
    }
  }
  *vocab_size = (int)(max_token + 1);
  L->n_files = 1;
  return 0;
}

/* ---- load ------------------------------------------------------------------- */

static int check_sizes(const char *path, size_t n_train, size_t n_val, int seq_len,
                       smoe_err_t *err) {
  size_t need = (size_t)seq_len + 1;
  if (n_train >= need && n_val >= need) return 0;
  const char *fix = n_train < need && n_val < need ? "more data"
                    : n_train < need               ? "a smaller data.val_fraction"
                                                   : "a larger data.val_fraction";
  return smoe_fail(err,
                   "%s: too little data for model.seq_len %d: the train split has %zu tokens and "
                   "the validation split %zu, each needs at least %zu (one window of seq_len + 1); "
                   "use a smaller model.seq_len or %s",
                   path, seq_len, n_train, n_val, need, fix);
}

int smoe_data_load(smoe_data_t *d, const char *path, double val_fraction, int seq_len,
                   smoe_err_t *err) {
  memset(d, 0, sizeof *d);
  if (!(val_fraction > 0 && val_fraction < 1))
    return smoe_fail(err, "data.val_fraction must be in (0, 1), got %g", val_fraction);
  if (seq_len < 1) return smoe_fail(err, "model.seq_len must be at least 1, got %d", seq_len);
  int is_default = !path || !path[0];
  if (is_default) path = SMOE_DEFAULT_CORPUS;
  struct stat st;
  if (stat(path, &st) != 0)
    return smoe_fail(err, "cannot open data path %s: %s%s", path, strerror(errno),
                     is_default ? " (the default corpus is Debian's fortunes package; install it "
                                  "or set data.path)"
                                : "");
  loader_t L = {.val_fraction = val_fraction, .err = err};
  L.val_threshold = (uint64_t)(val_fraction * VAL_SCALE);
  int vocab_size = 256, rc;
  if (S_ISDIR(st.st_mode)) {
    rc = add_folder(&L, path, !is_default);
    if (rc == 0 && L.n_files == 0) rc = smoe_fail(err, "no text files under %s", path);
  } else if (S_ISREG(st.st_mode)) {
    unsigned char *b;
    size_t n;
    rc = read_file(path, &b, &n, err);
    if (rc == 0 && is_bin(path, b, n))
      rc = load_bin(&L, path, b, n, seq_len, &vocab_size);
    else if (rc == 0)
      rc = add_text(&L, path, b, n);
    free(b);
  } else {
    rc = smoe_fail(err, "data path %s is neither a regular file nor a folder", path);
  }
  if (rc == 0) rc = check_sizes(path, L.train.n, L.val.n, seq_len, err);
  if (rc != 0) {
    free(L.train.p);
    free(L.val.p);
    return -1;
  }
  d->train = L.train.p;
  d->n_train = L.train.n;
  d->val = L.val.p;
  d->n_val = L.val.n;
  d->vocab_size = vocab_size;
  d->n_files = L.n_files;
  return 0;
}

int smoe_data_load_file(int32_t **tokens, size_t *n_tokens, int *vocab_size, const char *path,
                        smoe_err_t *err) {
  unsigned char *b;
  size_t n, count;
  *tokens = NULL, *n_tokens = 0;
  if (read_file(path, &b, &n, err) != 0) return -1;
  int rc;
  if (is_bin(path, b, n)) {
    rc = check_bin(path, b, n, &count, err);
    if (rc == 0) {
      *tokens = xmalloc(smoe_mul(count ? count : 1, sizeof(int32_t)));
      int32_t max_token = -1;
      for (size_t i = 0; i < count; i++) {
        const unsigned char *t = b + LLMC_HEADER_BYTES + 2 * i;
        (*tokens)[i] = (int32_t)t[0] | (int32_t)t[1] << 8;
        if ((*tokens)[i] > max_token) max_token = (*tokens)[i];
      }
      *vocab_size = (int)(max_token + 1);
    }
  } else {
    rc = check_text(path, b, n, err);
    if (rc == 0) {
      count = n;
      *tokens = xmalloc(smoe_mul(count ? count : 1, sizeof(int32_t)));
      for (size_t i = 0; i < count; i++) (*tokens)[i] = b[i];
      *vocab_size = 256;
    }
  }
  free(b);
  if (rc == 0) *n_tokens = count;
  return rc;
}

void smoe_data_free(smoe_data_t *d) {
  free(d->train);
  free(d->val);
  memset(d, 0, sizeof *d);
}

/* ---- sampling ---------------------------------------------------------------- */

void smoe_data_train_batch(const smoe_data_t *d, uint64_t seed, int64_t step, int first,
                           int n_windows, int seq_len, int32_t *out) {
  assert(seq_len >= 1 && d->n_train > (size_t)seq_len && first >= 0 && n_windows >= 0);
  size_t window = (size_t)seq_len + 1;
  uint64_t n_starts = d->n_train - (size_t)seq_len; /* starts 0 .. n_train - seq_len - 1 */
  uint64_t step_key = smoe_mix64(smoe_mix64(seed) ^ (uint64_t)step);
  for (int i = 0; i < n_windows; i++) {
    uint64_t w = (uint64_t)first + (uint64_t)i;
    uint64_t h = smoe_mix64(step_key + w * 0xD1B54A32D192ED03ull);
    size_t start = (size_t)(h % n_starts); /* bias under n_starts / 2^64: negligible */
    memcpy(out + (size_t)i * window, d->train + start, window * sizeof *out);
  }
}

int64_t smoe_data_val_windows(const smoe_data_t *d, int seq_len) {
  assert(seq_len >= 1);
  return (int64_t)(d->n_val / ((size_t)seq_len + 1));
}

void smoe_data_val_window(const smoe_data_t *d, int64_t i, int seq_len, int32_t *out) {
  int64_t count = smoe_data_val_windows(d, seq_len);
  assert(count > 0);
  int64_t k = ((i % count) + count) % count;
  size_t window = (size_t)seq_len + 1;
  memcpy(out, d->val + (size_t)k * window, window * sizeof *out);
}
