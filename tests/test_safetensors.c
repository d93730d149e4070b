/* test_safetensors.c: the safetensors reader and writer (engine/safetensors.h)
 * and the HF Mixtral layer on top of it (engine/hf.h).
 *
 * Round trips in F32, BF16 and F64 with exact values; bf16 rounding against
 * hand-computed bit patterns; F16 reading from a hand-made file; every rule
 * of the reader's validation, each with a malformed file built byte by byte
 * in memory (fmemopen) that must be refused with a message naming the rule
 * and the tensor; and the HF layer: save + load of a tiny model bit for bit
 * (same logits), config.json both ways, sharded checkpoints, and the errors
 * of each. Files go to a fresh mkdtemp folder per test, removed afterwards
 * even when the test fails (cmocka teardown). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
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

#include <cjson/cJSON.h>

#include "hf.h"
#include "safetensors.h"

#define LABEL "mem.safetensors" /* what in-memory files are called in errors */

/* --- helpers ------------------------------------------------------------- */

#define assert_has(msg, phrase)                                                             \
  do {                                                                                      \
    if (!strstr((msg), (phrase))) fail_msg("message \"%s\" lacks \"%s\"", (msg), (phrase)); \
  } while (0)

/* A temporary folder per test (the cmocka state). */
typedef struct {
  char dir[64];
} tmp_t;

static int tmp_setup(void **state) {
  tmp_t *t = calloc(1, sizeof *t);
  if (!t) return -1;
  strcpy(t->dir, "/tmp/smoe_test_st_XXXXXX");
  if (!mkdtemp(t->dir)) return free(t), -1;
  *state = t;
  return 0;
}

static void rm_rf(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char sub[512];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      rm_rf(sub);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static int tmp_teardown(void **state) {
  tmp_t *t = *state;
  rm_rf(t->dir);
  free(t);
  return 0;
}

static const char *tmp_dir(void **state) {
  return ((tmp_t *)*state)->dir;
}

static void join(char *out, size_t cap, const char *dir, const char *name) {
  assert_true((size_t)snprintf(out, cap, "%s/%s", dir, name) < cap);
}

static int exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* The bytes of a file (malloc'd; *len its size). */
static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  unsigned char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void spit(const char *path, const void *bytes, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(bytes, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* A safetensors file in memory: the 8-byte little-endian length field, the
 * header text, dlen bytes of data. malloc'd; *len its size. */
static unsigned char *build_with_len(uint64_t len_field, const char *header, const void *data,
                                     size_t dlen, size_t *len) {
  size_t hl = strlen(header);
  *len = 8 + hl + dlen;
  unsigned char *b = malloc(*len);
  assert_non_null(b);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len_field >> (8 * i));
  memcpy(b + 8, header, hl);
  if (dlen) memcpy(b + 8 + hl, data, dlen);
  return b;
}

static unsigned char *build(const char *header, const void *data, size_t dlen, size_t *len) {
  return build_with_len(strlen(header), header, data, dlen, len);
}

/* Opens bytes through fmemopen, telling the reader the file is `size` bytes. */
static smoe_st_t *open_mem_sized(unsigned char *bytes, size_t len, uint64_t size, smoe_err_t *err) {
  FILE *f = fmemopen(bytes, len, "rb");
  assert_non_null(f);
  return smoe_st_open_stream(f, size, LABEL, err);
}

static smoe_st_t *open_mem(unsigned char *bytes, size_t len, smoe_err_t *err) {
  return open_mem_sized(bytes, len, len, err);
}

/* header + data must be refused with a message holding the file's label and
 * every phrase. */
static void expect_bad(int line, const char *header, const void *data, size_t dlen,
                       const char *const *phrases) {
  size_t len;
  unsigned char *b = build(header, data, dlen, &len);
  smoe_err_t err = {{0}};
  smoe_st_t *st = open_mem(b, len, &err);
  if (st) {
    smoe_st_close(st);
    free(b);
    fail_msg("line %d: accepted a malformed header: %s", line, header);
  }
  free(b);
  if (!strstr(err.msg, LABEL)) fail_msg("line %d: \"%s\" does not name the file", line, err.msg);
  for (int i = 0; phrases[i]; i++)
    if (!strstr(err.msg, phrases[i]))
      fail_msg("line %d: \"%s\" lacks \"%s\" (header %s)", line, err.msg, phrases[i], header);
}
#define EXPECT_BAD(header, data, dlen, ...) \
  expect_bad(__LINE__, header, data, dlen, (const char *const[]){__VA_ARGS__, NULL})

static const unsigned char zeros[64];

/* NaN equals NaN, and zeros must agree in sign. */
static int same_value(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return a == b && signbit(a) == signbit(b);
}

static float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* --- writer round trips -------------------------------------------------- */

static void test_write_read_f32(void **state) {
  char path[256], tmp[300];
  join(path, sizeof path, tmp_dir(state), "w.safetensors");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  /* values exact in float, including the special ones */
  real a[6] = {1, (real)-2.5, (real)3.1415927f, (real)-0.0, (real)INFINITY, (real)NAN};
  real bias[4] = {(real)1e-3f, (real)FLT_MIN, (real)1e-45f /* subnormal */, (real)-FLT_MAX};
  real scalar[1] = {42};
  smoe_st_entry_t e[4] = {
      {.name = "layers.0.weight", .ndim = 2, .shape = {2, 3}, .data = a},
      {.name = "bias", .ndim = 1, .shape = {4}, .data = bias},
      {.name = "scalar", .ndim = 0, .data = scalar},
      {.name = "empty", .ndim = 2, .shape = {0, 3}, .data = scalar},
  };
  const char *const meta[] = {"format", "pt", "producer", "test", NULL};
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_st_write(path, e, 4, SMOE_F32, meta, &err), 0);
  assert_true(exists(path));
  assert_false(exists(tmp)); /* renamed away on success */

  /* the layout: header length a multiple of 8, data right after it */
  size_t len;
  unsigned char *bytes = slurp(path, &len);
  uint64_t hl = le64(bytes);
  assert_int_equal(hl % 8, 0);
  assert_int_equal(len, 8 + hl + 4 * (6 + 4 + 1));
  float raw[11];
  memcpy(raw, bytes + 8 + hl, sizeof raw);
  for (int i = 0; i < 6; i++) assert_true(same_value(raw[i], (float)a[i]));
  for (int i = 0; i < 4; i++) assert_true(same_value(raw[6 + i], (float)bias[i]));
  free(bytes);

  smoe_st_t *st = smoe_st_open(path, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_count(st), 4);
  for (int i = 0; i < 4; i++) { /* in the order written */
    const smoe_st_tensor_t *t = smoe_st_tensor(st, i);
    assert_string_equal(t->name, e[i].name);
    assert_int_equal(t->dtype, SMOE_F32);
    assert_int_equal(t->ndim, e[i].ndim);
    uint64_t numel = 1;
    for (int d = 0; d < e[i].ndim; d++) {
      assert_int_equal(t->shape[d], e[i].shape[d]);
      numel *= (uint64_t)e[i].shape[d];
    }
    assert_int_equal(t->numel, numel);
    assert_int_equal(t->end - t->begin, 4 * numel);
  }
  assert_ptr_equal(smoe_st_find(st, "bias"), smoe_st_tensor(st, 1));
  assert_null(smoe_st_find(st, "nope"));
  assert_string_equal(smoe_st_metadata(st, "format"), "pt");
  assert_string_equal(smoe_st_metadata(st, "producer"), "test");
  assert_null(smoe_st_metadata(st, "absent"));

  real got[6];
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "layers.0.weight"), got, &err), 0);
  for (int i = 0; i < 6; i++) assert_true(same_value(got[i], (real)(float)a[i]));
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "bias"), got, &err), 0);
  for (int i = 0; i < 4; i++) assert_true(same_value(got[i], (real)(float)bias[i]));
  got[0] = 0;
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "scalar"), got, &err), 0);
  assert_true(got[0] == 42);
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "empty"), got, &err), 0);
  smoe_st_close(st);
}

static void test_write_read_f64(void **state) {
  char path[256];
  join(path, sizeof path, tmp_dir(state), "d.safetensors");
  real v[6] = {(real)0.1, (real)-7.125, (real)1e-30, (real)6.02214076e23, (real)-INFINITY, 0};
  smoe_st_entry_t e = {.name = "v", .ndim = 2, .shape = {3, 2}, .data = v};
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_st_write(path, &e, 1, SMOE_F64, NULL, &err), 0);
  size_t len;
  unsigned char *bytes = slurp(path, &len);
  uint64_t hl = le64(bytes);
  assert_int_equal(hl % 8, 0);
  assert_int_equal(len, 8 + hl + 8 * 6);
  for (int i = 0; i < 6; i++) {
    double d;
    memcpy(&d, bytes + 8 + hl + 8 * i, 8);
    assert_true(same_value(d, (double)v[i])); /* stored as the exact double */
  }
  free(bytes);

  smoe_st_t *st = smoe_st_open(path, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_tensor(st, 0)->dtype, SMOE_F64);
  assert_null(smoe_st_metadata(st, "format")); /* no metadata written */
  real got[6];
  assert_int_equal(smoe_st_read(st, smoe_st_tensor(st, 0), got, &err), 0);
  for (int i = 0; i < 6; i++) assert_true(same_value(got[i], v[i]));
  smoe_st_close(st);
}

static void test_bf16_rounding(void **state) {
  static const struct {
    uint32_t f32;
    uint16_t bf16;
  } cases[] = {
      {0x3f800000u, 0x3f80}, /* 1.0 exact */
      {0x3f808000u, 0x3f80}, /* tie, 0x3f80 even: stays */
      {0x3f818000u, 0x3f82}, /* tie, 0x3f81 odd: rounds up to even */
      {0xbf818000u, 0xbf82}, /* negative tie */
      {0x3f808001u, 0x3f81}, /* just above the tie: up */
      {0x3f807fffu, 0x3f80}, /* just below: down */
      {0x407fffffu, 0x4080}, /* carry into the exponent */
      {0x7f800000u, 0x7f80}, /* +inf */
      {0xff800000u, 0xff80}, /* -inf */
      {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
      {0x80000000u, 0x8000}, /* -0 */
      {0x00000001u, 0x0000}, /* smallest subnormal rounds to 0 */
      {0x7fc00000u, 0x7fc0}, /* quiet NaN */
      {0xffc00000u, 0xffc0}, /* negative quiet NaN keeps its sign */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = smoe_f32_to_bf16(bits_f32(cases[i].f32));
    if (h != cases[i].bf16)
      fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", cases[i].f32, h, cases[i].bf16);
  }
  /* NaN whose payload sits only in the low 16 bits: truncation would make it inf */
  const uint32_t nans[] = {0x7f800001u, 0xff800001u, 0x7f80ffffu, 0x7fffffffu};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
    uint16_t h = smoe_f32_to_bf16(bits_f32(nans[i]));
    if (!isnan(smoe_bf16_to_f32(h))) fail_msg("bf16(0x%08x) = 0x%04x is not NaN", nans[i], h);
    assert_int_equal(h >> 15, nans[i] >> 31);
  }
  assert_true(smoe_bf16_to_f32(0x3f80) == 1.0f);
  assert_true(smoe_bf16_to_f32(0xc040) == -3.0f);
  assert_true(smoe_bf16_to_f32(0x7f80) == INFINITY);
  assert_true(signbit(smoe_bf16_to_f32(0x8000)));
  /* every bf16 that is a number survives f32 and back */
  for (uint32_t h = 0; h < 0x10000; h++) {
    float x = smoe_bf16_to_f32((uint16_t)h);
    if (!isnan(x)) assert_int_equal(smoe_f32_to_bf16(x), h);
  }
}

static void test_write_read_bf16(void **state) {
  char path[256];
  join(path, sizeof path, tmp_dir(state), "b.safetensors");
  enum { N = 11 };
  real v[N] = {1,
               (real)bits_f32(0x3f808000u),
               (real)bits_f32(0x3f818000u),
               (real)3.14159265f,
               (real)-1e-3f,
               (real)1e-40f,
               (real)-0.0,
               (real)INFINITY,
               (real)-INFINITY,
               (real)NAN,
               (real)FLT_MAX};
  smoe_st_entry_t e = {.name = "x", .ndim = 1, .shape = {N}, .data = v};
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_st_write(path, &e, 1, SMOE_BF16, NULL, &err), 0);
  size_t len;
  unsigned char *bytes = slurp(path, &len);
  uint64_t hl = le64(bytes);
  assert_int_equal(hl % 8, 0);
  assert_int_equal(len, 8 + hl + 2 * N);
  uint16_t raw[N];
  memcpy(raw, bytes + 8 + hl, sizeof raw);
  free(bytes);
  for (int i = 0; i < N; i++) assert_int_equal(raw[i], smoe_f32_to_bf16((float)v[i]));
  assert_int_equal(raw[1], 0x3f80);
  assert_int_equal(raw[2], 0x3f82);
  assert_int_equal(raw[7], 0x7f80);

  smoe_st_t *st = smoe_st_open(path, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_tensor(st, 0)->dtype, SMOE_BF16);
  real got[N];
  assert_int_equal(smoe_st_read(st, smoe_st_tensor(st, 0), got, &err), 0);
  smoe_st_close(st);
  for (int i = 0; i < N; i++) assert_true(same_value(got[i], smoe_bf16_to_f32(raw[i])));
  assert_true(got[0] == 1);
  assert_true(isinf(got[7]) && got[7] > 0);
  assert_true(isinf(got[8]) && got[8] < 0);
  assert_true(isnan(got[9]));
  assert_true(signbit(got[6]) && got[6] == 0);
}

/* The write goes through path.tmp: with a folder squatting on path.tmp it
 * cannot start, and the old file under path is left as it was. */
static void test_write_through_tmp(void **state) {
  char path[256], tmp[300];
  join(path, sizeof path, tmp_dir(state), "t.safetensors");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  spit(path, "old", 3);
  assert_int_equal(mkdir(tmp, 0700), 0);
  real v[2] = {1, 2};
  smoe_st_entry_t e = {.name = "v", .ndim = 1, .shape = {2}, .data = v};
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_st_write(path, &e, 1, SMOE_F32, NULL, &err), -1);
  assert_has(err.msg, tmp);
  size_t len;
  unsigned char *old = slurp(path, &len);
  assert_int_equal(len, 3);
  assert_memory_equal(old, "old", 3);
  free(old);

  assert_int_equal(rmdir(tmp), 0);
  assert_int_equal(smoe_st_write(path, &e, 1, SMOE_F32, NULL, &err), 0);
  assert_false(exists(tmp));
  smoe_st_t *st = smoe_st_open(path, &err);
  if (!st) fail_msg("%s", err.msg);
  smoe_st_close(st);
}

/* F16 is read-only: the writer refuses it up front and leaves nothing behind. */
static void test_write_f16_refused(void **state) {
  char path[256], tmp[300];
  join(path, sizeof path, tmp_dir(state), "h.safetensors");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  real v[2] = {1, 2};
  smoe_st_entry_t e = {.name = "v", .ndim = 1, .shape = {2}, .data = v};
  smoe_err_t err = {{0}};
  assert_int_equal(smoe_st_write(path, &e, 1, SMOE_F16, NULL, &err), -1);
  assert_has(err.msg, "F16");
  assert_false(exists(path));
  assert_false(exists(tmp));
}

/* --- reading hand-made files --------------------------------------------- */

static void test_read_f16(void **state) {
  static const struct {
    uint16_t h;
    float want;
  } cases[] = {
      {0x3c00, 1.0f},
      {0xc000, -2.0f},
      {0x3555, 0.333251953125f},         /* 1365 / 4096 */
      {0x7bff, 65504.0f},                /* largest half */
      {0x0400, 6.103515625e-05f},        /* smallest normal, 2^-14 */
      {0x0001, 5.9604644775390625e-08f}, /* smallest subnormal, 2^-24 */
      {0x03ff, 6.097555160522461e-05f},  /* largest subnormal, 1023 * 2^-24 */
      {0x8200, -3.0517578125e-05f},      /* negative subnormal, -2^-15 */
      {0x7c00, INFINITY},
      {0xfc00, -INFINITY},
      {0x8000, -0.0f},
      {0x0000, 0.0f},
      {0x7e00, NAN},
  };
  enum { N = sizeof cases / sizeof cases[0] };
  uint16_t raw[N];
  for (int i = 0; i < N; i++) raw[i] = cases[i].h;
  char header[128];
  snprintf(header, sizeof header,
           "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]}}", N, 2 * N);
  size_t len;
  unsigned char *b = build(header, raw, sizeof raw, &len);
  smoe_err_t err = {{0}};
  smoe_st_t *st = open_mem(b, len, &err);
  if (!st) fail_msg("%s", err.msg);
  const smoe_st_tensor_t *t = smoe_st_find(st, "h");
  assert_non_null(t);
  assert_int_equal(t->dtype, SMOE_F16);
  assert_int_equal(t->numel, N);
  real got[N];
  assert_int_equal(smoe_st_read(st, t, got, &err), 0);
  smoe_st_close(st);
  free(b);
  for (int i = 0; i < N; i++)
    if (!same_value(got[i], cases[i].want))
      fail_msg("f16 0x%04x read as %.9g, want %.9g", cases[i].h, (double)got[i],
               (double)cases[i].want);
}

/* Valid files the writer would not make: no tensors, tensors stored in
 * another order than the header lists them, an empty tensor between two
 * others, padding after the JSON, mixed dtypes. */
static void test_read_valid_edge_cases(void **state) {
  smoe_err_t err = {{0}};
  size_t len;
  unsigned char *b = build("{}", NULL, 0, &len);
  smoe_st_t *st = open_mem(b, len, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_count(st), 0);
  assert_null(smoe_st_metadata(st, "format"));
  smoe_st_close(st);
  free(b);

  b = build("{\"__metadata__\":{\"format\":\"pt\"}}   \n", NULL, 0, &len);
  st = open_mem(b, len, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_count(st), 0);
  assert_string_equal(smoe_st_metadata(st, "format"), "pt");
  smoe_st_close(st);
  free(b);

  unsigned char data[4 + 8 + 2];
  const float f = 2.5f;
  const double d = -0.75;
  const uint16_t h = 0x3f80; /* bf16 1.0 */
  memcpy(data, &f, 4);
  memcpy(data + 4, &d, 8);
  memcpy(data + 12, &h, 2);
  b = build(
      "{\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]},"
      "\"z\":{\"shape\":[3,0],\"dtype\":\"F32\",\"data_offsets\":[4,4]},"
      "\"b\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[4,12]},"
      "\"a\":{\"data_offsets\":[0,4],\"dtype\":\"F32\",\"shape\":[1,1]}}  ",
      data, sizeof data, &len);
  st = open_mem(b, len, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_count(st), 4);
  assert_string_equal(smoe_st_tensor(st, 0)->name, "c"); /* header order kept */
  real got;
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "a"), &got, &err), 0);
  assert_true(got == (real)2.5);
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "b"), &got, &err), 0);
  assert_true(got == (real)-0.75);
  assert_int_equal(smoe_st_find(st, "b")->ndim, 0);
  assert_int_equal(smoe_st_find(st, "b")->numel, 1);
  assert_int_equal(smoe_st_read(st, smoe_st_find(st, "c"), &got, &err), 0);
  assert_true(got == 1);
  assert_int_equal(smoe_st_find(st, "z")->numel, 0);
  smoe_st_close(st);
  free(b);
}

/* --- malformed files: each refused, naming the rule ---------------------- */

#define T1(fields) "{\"t\":{" fields "}}" /* one tensor named t */

static void test_reject_framing(void **state) {
  smoe_err_t err = {{0}};
  size_t len;
  unsigned char *b = build_with_len(2, "", NULL, 0, &len);
  assert_null(open_mem(b, 5, &err)); /* 5 bytes: not even the length */
  assert_has(err.msg, "too short");
  assert_has(err.msg, LABEL);
  free(b);

  b = build_with_len(100, "{}", NULL, 0, &len); /* claims 100 header bytes, has 2 */
  assert_null(open_mem(b, len, &err));
  assert_has(err.msg, "bad header length 100");
  free(b);

  b = build_with_len(UINT64_MAX, "{}", NULL, 0, &len);
  assert_null(open_mem(b, len, &err));
  assert_has(err.msg, "bad header length");
  free(b);

  b = build_with_len(0, "", NULL, 0, &len);
  assert_null(open_mem(b, len, &err));
  assert_has(err.msg, "bad header length 0");
  free(b);

  /* an absurd length is refused before anything is allocated or read, even
   * when the file is large enough to hold it (here: says it is, 1 GiB) */
  b = build_with_len(200000000, "{}", NULL, 0, &len);
  assert_null(open_mem_sized(b, len, 1ull << 30, &err));
  assert_has(err.msg, "bad header length 200000000");
  free(b);

  EXPECT_BAD("{\"t\":", NULL, 0, "not a JSON object");
  EXPECT_BAD("{\"t\" 1}", NULL, 0, "not a JSON object");
  EXPECT_BAD("{,}", NULL, 0, "not a JSON object");
  EXPECT_BAD("[1,2]", NULL, 0, "does not start with '{'");
  EXPECT_BAD("\"text\"", NULL, 0, "does not start with '{'");
  EXPECT_BAD("  {}", NULL, 0, "does not start with '{'");
  EXPECT_BAD("\0{}", NULL, 0, "bad header length"); /* strlen 0 */
  EXPECT_BAD("{} x", NULL, 0, "after its JSON object");
  EXPECT_BAD("{}{}", NULL, 0, "after its JSON object");
}

static void test_reject_dtype(void **state) {
  EXPECT_BAD(T1("\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]"), zeros, 8, "'t'",
             "unsupported dtype I64", "supported: F32, BF16, F16, F64");
  EXPECT_BAD(T1("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), zeros, 4, "'t'",
             "unsupported dtype f32");
  EXPECT_BAD(T1("\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]"), zeros, 4, "'t'",
             "not a string");
}

static void test_reject_shape(void **state) {
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]"), zeros, 16, "'t'",
             "shape must be a list");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":{\"a\":1},\"data_offsets\":[0,4]"), zeros, 4, "'t'",
             "shape must be a list");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]"), zeros, 8, "'t'",
             "shape entries must be non-negative integers");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1.5,2],\"data_offsets\":[0,12]"), zeros, 12, "'t'",
             "shape entries must be non-negative integers");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), zeros, 8, "'t'",
             "shape entries must be non-negative integers");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]"), zeros, 4, "'t'",
             "shape entries must be non-negative integers");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), zeros, 4,
             "'t'", "at most 8");
  /* 2^32 * 2^32: the element count overflows 64 bits */
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]"),
             zeros, 4, "'t'", "shape overflows");
  /* 2^31 * 2^31 elements fit, times 4 bytes does not */
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,4]"),
             zeros, 4, "'t'", "needs 4611686018427387904 x 4");
}

static void test_reject_offsets(void **state) {
  const char *rule = "data_offsets must be [begin, end]";
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]"), zeros, 4, "'t'", rule);
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), zeros, 8, "'t'", rule);
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\""), zeros, 4, "'t'", rule);
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]"), zeros, 4, "'t'",
             rule); /* begin > end */
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), zeros, 4, "'t'", rule);
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]"), zeros, 4, "'t'", rule);
  /* the byte count must be shape x dtype size */
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), zeros, 4, "'t'",
             "span 4 bytes", "needs 2 x 4");
  EXPECT_BAD(T1("\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]"), zeros, 16, "'t'",
             "span 16 bytes", "needs 4 x 2");
  /* offsets past the end: a truncated file */
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), zeros, 12, "'t'",
             "past the end of the data (12 bytes", "truncated");
}

static void test_reject_layout(void **state) {
  EXPECT_BAD(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
      zeros, 12, "overlap", "'a'", "'b'");
  /* b inside a, listed first */
  EXPECT_BAD(
      "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
      zeros, 16, "overlap", "'a'", "'b'");
  /* the same bytes twice */
  EXPECT_BAD(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
      zeros, 4, "overlap");
  EXPECT_BAD(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
      zeros, 12, "4 unused bytes before tensor 'b'");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]"), zeros, 8,
             "4 unused bytes before tensor 't'");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), zeros, 8,
             "4 bytes after the last tensor");
  EXPECT_BAD("{}", zeros, 3, "3 bytes after the last tensor");
}

static void test_reject_entries(void **state) {
  EXPECT_BAD(
      "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
      zeros, 8, "tensor 't' appears twice");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"strides\":[1]"), zeros, 4,
             "'t'", "unknown field 'strides'");
  EXPECT_BAD(T1("\"dtype\":\"F32\",\"shape\":[1]"), zeros, 4, "'t'",
             "needs dtype, shape and data_offsets");
  EXPECT_BAD(T1(""), NULL, 0, "'t'", "needs dtype, shape and data_offsets");
  EXPECT_BAD("{\"t\":[\"F32\",[1],[0,4]]}", zeros, 4, "'t'", "entry is not a JSON object");
  EXPECT_BAD("{\"t\":null}", NULL, 0, "'t'", "entry is not a JSON object");
}

static void test_reject_metadata(void **state) {
  EXPECT_BAD("{\"__metadata__\":\"pt\"}", NULL, 0, "__metadata__ is not an object");
  EXPECT_BAD("{\"__metadata__\":[\"format\",\"pt\"]}", NULL, 0, "__metadata__ is not an object");
  EXPECT_BAD("{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", NULL, 0,
             "__metadata__ value 'step' is not a string");
  EXPECT_BAD("{\"__metadata__\":{\"nested\":{}}}", NULL, 0,
             "__metadata__ value 'nested' is not a string");
}

/* The same rules through smoe_st_open on a real file, and a missing one. */
static void test_reject_real_file(void **state) {
  char path[256];
  join(path, sizeof path, tmp_dir(state), "bad.safetensors");
  size_t len;
  unsigned char *b = build(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
      zeros, 12, &len);
  spit(path, b, len);
  free(b);
  smoe_err_t err = {{0}};
  assert_null(smoe_st_open(path, &err));
  assert_has(err.msg, path);
  assert_has(err.msg, "overlap");

  /* a file cut short: the offsets now run past its end */
  real v[4] = {1, 2, 3, 4};
  smoe_st_entry_t e = {.name = "v", .ndim = 1, .shape = {4}, .data = v};
  assert_int_equal(smoe_st_write(path, &e, 1, SMOE_F32, NULL, &err), 0);
  unsigned char *whole = slurp(path, &len);
  spit(path, whole, len - 3);
  free(whole);
  assert_null(smoe_st_open(path, &err));
  assert_has(err.msg, path);
  assert_has(err.msg, "'v'");
  assert_has(err.msg, "truncated");

  join(path, sizeof path, tmp_dir(state), "absent.safetensors");
  assert_null(smoe_st_open(path, &err));
  assert_has(err.msg, "cannot open");
  assert_has(err.msg, path);
  assert_has(err.msg, strerror(ENOENT));
}

/* --- the HF layer -------------------------------------------------------- */

enum { TB = 2 }; /* sequences per forward */

static void tiny_config(smoe_config_t *c, uint64_t seed) {
  smoe_config_defaults(c);
  c->dim = 16, c->n_layers = 2, c->n_heads = 2, c->n_kv_heads = 1;
  c->num_experts = 4, c->top_k = 2, c->expert_dim = 8;
  c->vocab_size = 32, c->seq_len = 8;
  c->seed = seed;
  smoe_err_t err;
  if (smoe_config_validate(c, &err) != 0) fail_msg("%s", err.msg);
}

/* The dtype that holds `real` exactly. */
static smoe_dtype_t exact_dtype(void) {
  return sizeof(real) == 8 ? SMOE_F64 : SMOE_F32;
}

static void assert_same_params(const smoe_model_t *a, const smoe_model_t *b) {
  assert_int_equal(a->n_dense, b->n_dense);
  assert_int_equal(a->n_experts, b->n_experts);
  assert_memory_equal(a->dense_mem, b->dense_mem, sizeof(real) * a->n_dense);
  assert_memory_equal(a->experts, b->experts, sizeof(real) * a->n_experts);
}

/* Forwards fixed tokens through both models: the losses and what the forward
 * leaves in place of the logits (the loss's gradient) must agree bit for bit. */
static void assert_same_logits(smoe_model_t *a, smoe_model_t *b) {
  const int T = a->dims.T, V = a->dims.V;
  int32_t tokens[TB * 9];
  assert_true(T + 1 <= 9);
  for (int i = 0; i < TB * (T + 1); i++) tokens[i] = (int32_t)((i * 7 + 3) % V);
  size_t n = (size_t)TB * T * V;
  double la = smoe_model_forward(a, tokens, TB);
  real *logits = malloc(sizeof(real) * n);
  assert_non_null(logits);
  memcpy(logits, a->a.logits, sizeof(real) * n);
  double lb = smoe_model_forward(b, tokens, TB);
  assert_true(isfinite(la));
  assert_true(la == lb);
  assert_memory_equal(logits, b->a.logits, sizeof(real) * n);
  free(logits);
}

/* Writes the model's tensor table to path, except `skip`, with `extra` added
 * and the shape of `transpose` swapped (each NULL for none). */
static void write_table(const smoe_model_t *m, const char *path, const char *skip,
                        const char *extra, const char *transpose) {
  smoe_st_entry_t *e = calloc((size_t)m->n_tensors + 1, sizeof *e);
  assert_non_null(e);
  int n = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    const smoe_tensor_t *t = &m->tensors[i];
    if (skip && strcmp(t->name, skip) == 0) continue;
    e[n].name = t->name;
    e[n].ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) e[n].shape[d] = t->shape[d];
    if (transpose && strcmp(t->name, transpose) == 0) {
      e[n].shape[0] = t->shape[1];
      e[n].shape[1] = t->shape[0];
    }
    e[n].data = smoe_tensor_data(m, t);
    n++;
  }
  if (extra) {
    e[n].name = extra;
    e[n].ndim = 1;
    e[n].shape[0] = 4;
    e[n].data = m->dense_mem;
    n++;
  }
  smoe_err_t err = {{0}};
  if (smoe_st_write(path, e, n, SMOE_F32, NULL, &err) != 0) fail_msg("%s", err.msg);
  free(e);
}

static void test_hf_roundtrip(void **state) {
  const char *dir = tmp_dir(state);
  char path[256];
  join(path, sizeof path, dir, "model.safetensors");
  smoe_config_t c;
  tiny_config(&c, 1234);
  smoe_model_t m, m2;
  smoe_model_init(&m, &c, TB);
  smoe_err_t err = {{0}};
  if (smoe_hf_save(&m, path, exact_dtype(), NULL, NULL, &err) != 0) fail_msg("%s", err.msg);
  if (smoe_hf_write_config(&c, exact_dtype(), dir, &err) != 0) fail_msg("%s", err.msg);

  smoe_st_t *st = smoe_st_open(path, &err);
  if (!st) fail_msg("%s", err.msg);
  assert_int_equal(smoe_st_count(st), m.n_tensors);
  assert_string_equal(smoe_st_metadata(st, "format"), "pt");
  assert_non_null(smoe_st_find(st, "model.layers.1.block_sparse_moe.experts.3.w2.weight"));
  smoe_st_close(st);

  c.seed = 99; /* another init, so loading has something to overwrite */
  smoe_model_init(&m2, &c, TB);
  assert_true(memcmp(m.dense_mem, m2.dense_mem, sizeof(real) * m.n_dense) != 0);
  assert_true(memcmp(m.experts, m2.experts, sizeof(real) * m.n_experts) != 0);
  if (smoe_hf_load(&m2, dir, NULL, NULL, &err) != 0) fail_msg("%s", err.msg);
  assert_same_params(&m, &m2);
  assert_same_logits(&m, &m2);
  smoe_model_free(&m);
  smoe_model_free(&m2);
}

/* Saved as bf16, loaded back: every parameter is its bf16 rounding. */
static void test_hf_bf16(void **state) {
  const char *dir = tmp_dir(state);
  char path[256];
  join(path, sizeof path, dir, "model.safetensors");
  smoe_config_t c;
  tiny_config(&c, 5);
  smoe_model_t m, m2;
  smoe_model_init(&m, &c, TB);
  smoe_err_t err = {{0}};
  if (smoe_hf_save(&m, path, SMOE_BF16, NULL, NULL, &err) != 0) fail_msg("%s", err.msg);
  c.seed = 6;
  smoe_model_init(&m2, &c, TB);
  if (smoe_hf_load(&m2, dir, NULL, NULL, &err) != 0) fail_msg("%s", err.msg);
  int rounded = 0;
  for (size_t i = 0; i < m.n_dense; i++) {
    real want = (real)smoe_bf16_to_f32(smoe_f32_to_bf16((float)m.dense_mem[i]));
    assert_true(m2.dense_mem[i] == want);
    rounded += want != m.dense_mem[i];
  }
  for (size_t i = 0; i < m.n_experts; i++)
    assert_true(m2.experts[i] == (real)smoe_bf16_to_f32(smoe_f32_to_bf16((float)m.experts[i])));
  assert_true(rounded > 0); /* the rounding did something */
  smoe_model_free(&m);
  smoe_model_free(&m2);
}

static void test_hf_config_roundtrip(void **state) {
  const char *dir = tmp_dir(state);
  smoe_config_t c, other;
  tiny_config(&c, 1);
  c.rope_theta = 5000, c.rms_norm_eps = 1e-6, c.tie_word_embeddings = 1;
  smoe_err_t err = {{0}};
  if (smoe_hf_write_config(&c, SMOE_BF16, dir, &err) != 0) fail_msg("%s", err.msg);

  char path[256];
  join(path, sizeof path, dir, "config.json");
  size_t len;
  char *text = (char *)slurp(path, &len);
  text[len] = '\0';
  cJSON *o = cJSON_Parse(text);
  free(text);
  assert_non_null(o);
  assert_string_equal(cJSON_GetObjectItem(o, "model_type")->valuestring, "mixtral");
  assert_string_equal(cJSON_GetObjectItem(o, "torch_dtype")->valuestring, "bfloat16");
  assert_int_equal(cJSON_GetObjectItem(o, "head_dim")->valueint, 8);
  assert_int_equal(cJSON_GetObjectItem(o, "num_key_value_heads")->valueint, 1);
  cJSON_Delete(o);

  smoe_config_defaults(&other); /* other sizes */
  other.seq_len = 8;
  char changed[2048] = "x";
  if (smoe_hf_read_config(&other, dir, changed, sizeof changed, &err) != 0) fail_msg("%s", err.msg);
  assert_int_equal(other.vocab_size, c.vocab_size);
  assert_int_equal(other.dim, c.dim);
  assert_int_equal(other.n_layers, c.n_layers);
  assert_int_equal(other.n_heads, c.n_heads);
  assert_int_equal(other.n_kv_heads, c.n_kv_heads);
  assert_true(other.rope_theta == c.rope_theta);
  assert_true(other.rms_norm_eps == c.rms_norm_eps);
  assert_int_equal(other.tie_word_embeddings, 1);
  assert_int_equal(other.num_experts, c.num_experts);
  assert_int_equal(other.top_k, c.top_k);
  assert_int_equal(other.expert_dim, c.expert_dim);
  assert_int_equal(other.seq_len, 8); /* not an architecture key: kept */
  assert_has(changed, "model.dim: 128 -> 16\n");
  assert_has(changed, "model.vocab_size");
  assert_has(changed, "model.n_layers");
  assert_has(changed, "moe.num_experts");
  assert_has(changed, "moe.expert_dim");
  assert_has(changed, "model.tie_word_embeddings");
  assert_null(strstr(changed, "seq_len"));

  /* read over the config it came from: nothing changes */
  smoe_config_t same = c;
  if (smoe_hf_read_config(&same, dir, changed, sizeof changed, &err) != 0) fail_msg("%s", err.msg);
  assert_string_equal(changed, "");
  assert_memory_equal(&same, &c, sizeof c);
}

/* Writes dir/config.json: c's, with field set to value (a JSON text; NULL:
 * the field removed). */
static void write_config_with(const char *dir, const smoe_config_t *c, const char *field,
                              const char *value) {
  smoe_err_t err = {{0}};
  if (smoe_hf_write_config(c, SMOE_F32, dir, &err) != 0) fail_msg("%s", err.msg);
  char path[256];
  join(path, sizeof path, dir, "config.json");
  size_t len;
  char *text = (char *)slurp(path, &len);
  text[len] = '\0';
  cJSON *o = cJSON_Parse(text);
  free(text);
  assert_non_null(o);
  cJSON_DeleteItemFromObjectCaseSensitive(o, field);
  if (value) {
    cJSON *v = cJSON_Parse(value);
    assert_non_null(v);
    cJSON_AddItemToObject(o, field, v);
  }
  char *out = cJSON_Print(o);
  cJSON_Delete(o);
  spit(path, out, strlen(out));
  free(out);
}

static void test_hf_config_errors(void **state) {
  const char *dir = tmp_dir(state);
  smoe_config_t c;
  tiny_config(&c, 1);
  static const struct {
    const char *field, *value, *phrase;
  } cases[] = {
      {"model_type", "\"llama\"", "model_type is llama"},
      {"model_type", NULL, "model_type is missing"},
      {"hidden_act", "\"gelu\"", "hidden_act"},
      {"head_dim", "4", "head_dim must be hidden_size / num_attention_heads = 8"},
      {"hidden_size", NULL, "hidden_size is missing"},
      {"hidden_size", "\"16\"", "hidden_size is not a number"},
      {"hidden_size", "16.5", "hidden_size = 16.5"},
      {"num_attention_heads", "3", "n_heads"}, /* does not divide 16 */
      {"num_experts_per_tok", "5", "top_k"},   /* more than the 4 experts */
      {"sliding_window", "4", "sliding_window is shorter than model.seq_len = 8"},
  };
  char path[256];
  join(path, sizeof path, dir, "config.json");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_config_with(dir, &c, cases[i].field, cases[i].value);
    smoe_config_t got;
    tiny_config(&got, 1);
    got.dim = 32; /* must survive a failed read */
    smoe_err_t err = {{0}};
    if (smoe_hf_read_config(&got, dir, NULL, 0, &err) == 0)
      fail_msg("%s = %s accepted", cases[i].field, cases[i].value ? cases[i].value : "(absent)");
    if (!strstr(err.msg, cases[i].phrase) || !strstr(err.msg, path))
      fail_msg("%s = %s: \"%s\" lacks \"%s\" or the path", cases[i].field,
               cases[i].value ? cases[i].value : "(absent)", err.msg, cases[i].phrase);
    assert_int_equal(got.dim, 32);
  }

  /* absent num_key_value_heads means num_attention_heads (MixtralConfig) */
  write_config_with(dir, &c, "num_key_value_heads", NULL);
  smoe_config_t got;
  tiny_config(&got, 1);
  smoe_err_t err = {{0}};
  if (smoe_hf_read_config(&got, dir, NULL, 0, &err) != 0) fail_msg("%s", err.msg);
  assert_int_equal(got.n_kv_heads, 2);

  spit(path, "not json", 8);
  assert_int_equal(smoe_hf_read_config(&got, dir, NULL, 0, &err), -1);
  assert_has(err.msg, "is not a JSON object");
  assert_int_equal(unlink(path), 0);
  assert_int_equal(smoe_hf_read_config(&got, dir, NULL, 0, &err), -1);
  assert_has(err.msg, "cannot open");
  assert_has(err.msg, path);
}

static void test_hf_load_errors(void **state) {
  const char *dir = tmp_dir(state);
  char path[256];
  join(path, sizeof path, dir, "model.safetensors");
  smoe_config_t c;
  tiny_config(&c, 3);
  smoe_model_t m;
  smoe_model_init(&m, &c, TB);
  smoe_err_t err = {{0}};

  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1); /* nothing there yet */
  assert_has(err.msg, "holds neither model.safetensors nor model.safetensors.index.json");

  write_table(&m, path, "model.norm.weight", NULL, NULL);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "tensor 'model.norm.weight' is missing");

  write_table(&m, path, "model.layers.1.block_sparse_moe.experts.2.w3.weight", NULL, NULL);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight' is missing");

  write_table(&m, path, NULL, "model.layers.0.mlp.extra.weight", NULL);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "unexpected tensor 'model.layers.0.mlp.extra.weight'");

  /* k_proj is (Hkv*hd, D) = (8, 16) */
  write_table(&m, path, NULL, NULL, "model.layers.1.self_attn.k_proj.weight");
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "tensor 'model.layers.1.self_attn.k_proj.weight' has shape [16, 8]");
  assert_has(err.msg, "needs [8, 16]");

  /* a truncated file is the reader's error, passed on */
  write_table(&m, path, NULL, NULL, NULL);
  size_t len;
  unsigned char *whole = slurp(path, &len);
  spit(path, whole, len - 4);
  free(whole);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "truncated");
  assert_has(err.msg, path);
  smoe_model_free(&m);
}

/* Writes the tensors of m over two shard files plus the index. A tensor named
 * `twice` goes into both shards; `bad_file` replaces the second file's name in
 * the index. */
static void write_sharded(const smoe_model_t *m, const char *dir, const char *twice,
                          const char *bad_file) {
  static const char *const files[2] = {"model-00001-of-00002.safetensors",
                                       "model-00002-of-00002.safetensors"};
  const int half = m->n_tensors / 2;
  cJSON *index = cJSON_CreateObject(), *map = cJSON_CreateObject();
  cJSON_AddItemToObject(cJSON_AddObjectToObject(index, "metadata"), "total_size",
                        cJSON_CreateNumber((double)(sizeof(real) * (m->n_dense + m->n_experts))));
  cJSON_AddItemToObject(index, "weight_map", map);
  for (int s = 0; s < 2; s++) {
    int lo = s ? half : 0, hi = s ? m->n_tensors : half, n = 0;
    smoe_st_entry_t *e = calloc((size_t)m->n_tensors, sizeof *e);
    assert_non_null(e);
    for (int i = 0; i < m->n_tensors; i++) {
      const smoe_tensor_t *t = &m->tensors[i];
      int mine = i >= lo && i < hi;
      if (!mine && !(twice && strcmp(t->name, twice) == 0)) continue;
      e[n].name = t->name;
      e[n].ndim = t->ndim;
      for (int d = 0; d < t->ndim; d++) e[n].shape[d] = t->shape[d];
      e[n].data = smoe_tensor_data(m, t);
      n++;
      const char *file = s && bad_file ? bad_file : files[s];
      if (mine) cJSON_AddStringToObject(map, t->name, file);
    }
    char path[256];
    join(path, sizeof path, dir, files[s]);
    smoe_err_t err = {{0}};
    if (smoe_st_write(path, e, n, exact_dtype(), NULL, &err) != 0) fail_msg("%s", err.msg);
    free(e);
  }
  char *text = cJSON_Print(index);
  cJSON_Delete(index);
  char path[256];
  join(path, sizeof path, dir, "model.safetensors.index.json");
  spit(path, text, strlen(text));
  free(text);
}

static void test_hf_sharded(void **state) {
  const char *dir = tmp_dir(state);
  smoe_config_t c;
  tiny_config(&c, 11);
  smoe_model_t m, m2;
  smoe_model_init(&m, &c, TB);
  write_sharded(&m, dir, NULL, NULL);
  char path[256];
  join(path, sizeof path, dir, "model.safetensors");
  assert_false(exists(path)); /* only the index leads to the weights */
  c.seed = 12;
  smoe_model_init(&m2, &c, TB);
  assert_true(memcmp(m.dense_mem, m2.dense_mem, sizeof(real) * m.n_dense) != 0);
  smoe_err_t err = {{0}};
  if (smoe_hf_load(&m2, dir, NULL, NULL, &err) != 0) fail_msg("%s", err.msg);
  assert_same_params(&m, &m2);
  assert_same_logits(&m, &m2);
  smoe_model_free(&m);
  smoe_model_free(&m2);
}

static void test_hf_index_errors(void **state) {
  const char *dir = tmp_dir(state);
  smoe_config_t c;
  tiny_config(&c, 11);
  smoe_model_t m;
  smoe_model_init(&m, &c, TB);
  smoe_err_t err = {{0}};
  char index[256];
  join(index, sizeof index, dir, "model.safetensors.index.json");

  write_sharded(&m, dir, NULL, "../model-00002-of-00002.safetensors");
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "must be a file name");
  assert_has(err.msg, index);

  write_sharded(&m, dir, NULL, "model-00003-of-00002.safetensors"); /* not there */
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "cannot open");
  assert_has(err.msg, "model-00003-of-00002.safetensors");

  /* a tensor stored in both shards: which copy would win is undefined */
  const char *twice = "model.layers.0.self_attn.q_proj.weight";
  write_sharded(&m, dir, twice, NULL);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, twice);
  assert_has(err.msg, "appears in two files");

  spit(index, "{\"weight_map\":{\"model.norm.weight\":3}}", 38);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "weight_map['model.norm.weight'] must be a file name");

  spit(index, "{\"metadata\":{}}", 15);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "no weight_map object");

  spit(index, "{\"weight_map\":", 14);
  assert_int_equal(smoe_hf_load(&m, dir, NULL, NULL, &err), -1);
  assert_has(err.msg, "no weight_map object");
  smoe_model_free(&m);
}

int main(void) {
#define TMP_TEST(f) cmocka_unit_test_setup_teardown(f, tmp_setup, tmp_teardown)
  const struct CMUnitTest tests[] = {
      TMP_TEST(test_write_read_f32),
      TMP_TEST(test_write_read_f64),
      cmocka_unit_test(test_bf16_rounding),
      TMP_TEST(test_write_read_bf16),
      TMP_TEST(test_write_through_tmp),
      TMP_TEST(test_write_f16_refused),
      cmocka_unit_test(test_read_f16),
      cmocka_unit_test(test_read_valid_edge_cases),
      cmocka_unit_test(test_reject_framing),
      cmocka_unit_test(test_reject_dtype),
      cmocka_unit_test(test_reject_shape),
      cmocka_unit_test(test_reject_offsets),
      cmocka_unit_test(test_reject_layout),
      cmocka_unit_test(test_reject_entries),
      cmocka_unit_test(test_reject_metadata),
      TMP_TEST(test_reject_real_file),
      TMP_TEST(test_hf_roundtrip),
      TMP_TEST(test_hf_bf16),
      TMP_TEST(test_hf_config_roundtrip),
      TMP_TEST(test_hf_config_errors),
      TMP_TEST(test_hf_load_errors),
      TMP_TEST(test_hf_sharded),
      TMP_TEST(test_hf_index_errors),
  };
#undef TMP_TEST
  return cmocka_run_group_tests(tests, NULL, NULL);
}
