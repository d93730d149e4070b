/* test_codec: the checkpoint chunk codec (storage/codec.c): bitwise round
 * trips for every encoding on random bits and on Adam-like state, odd and
 * zero lengths, a delta chain, and every malformed chunk rejected with a
 * message. */
#include <math.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "codec.h"

static const smoe_enc_t ENCS[] = {SMOE_ENC_RAW_ZSTD, SMOE_ENC_SHUFFLE_ZSTD,
                                  SMOE_ENC_XOR_SHUFFLE_ZSTD};

static uint64_t rng_next(uint64_t *s) { return smoe_mix64(*s += 0x9e3779b97f4a7c15ull); }
static double rng_unif(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * 0x1.0p-53; }
static double rng_normal(uint64_t *s) {
  return sqrt(-2 * log(rng_unif(s))) * cos(2 * M_PI * rng_unif(s));
}

static void fill_bits(uint8_t *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rng_next(&seed);
}

/* kind 0: weights ~ N(0, 0.02); 1: exp_avg ~ N(0, 1e-4); 2: exp_avg_sq ~ |N(0, 1e-8)| */
static void fill_adam(void *p, size_t count, size_t elem, int kind, uint64_t seed) {
  for (size_t i = 0; i < count; i++) {
    double x = rng_normal(&seed);
    double v = kind == 0 ? 0.02 * x : kind == 1 ? 1e-4 * x : 1e-8 * x * x;
    if (elem == 4) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
  }
}

/* Encodes and decodes; asserts the bytes come back and returns the chunk size. */
static size_t round_trip(smoe_enc_t enc, const void *data, const void *base, size_t n,
                         size_t elem) {
  smoe_err_t err = {{0}};
  size_t cap = smoe_codec_bound(n);
  assert_true(cap > 0);
  uint8_t *chunk = malloc(cap), *back = malloc(n ? n : 1);
  int64_t len = smoe_codec_encode(enc, 3, data, base, n, elem, chunk, cap, &err);
  if (len < 0) fail_msg("encode: %s", err.msg);
  smoe_enc_t e;
  size_t raw, stored;
  assert_int_equal(smoe_codec_info(chunk, (size_t)len, &e, &raw, &stored, &err), 0);
  assert_int_equal(e, enc);
  assert_int_equal(raw, n);
  assert_int_equal(stored + SMOE_CODEC_HEADER, (size_t)len);
  if (smoe_codec_decode(chunk, (size_t)len, base, back, n, &err) != 0)
    fail_msg("decode (%s, n %zu, elem %zu): %s", smoe_codec_name(enc), n, elem, err.msg);
  if (n) assert_memory_equal(back, data, n);
  free(chunk);
  free(back);
  return (size_t)len;
}

static void test_random_bits(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 3, 4, 5, 7, 8, 9, 31, 1000, 4099, 65536 + 13};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
    for (size_t elem = 4; elem <= 8; elem += 4) {
      size_t n = sizes[s];
      uint8_t *data = malloc(n + 1), *base = malloc(n + 1);
      fill_bits(data, n, 1 + s);
      fill_bits(base, n, 100 + s);
      for (int k = 0; k < 3; k++)
        round_trip(ENCS[k], data, ENCS[k] == SMOE_ENC_XOR_SHUFFLE_ZSTD ? base : NULL, n, elem);
      free(data);
      free(base);
    }
}

static void test_adam_state(void **state) {
  (void)state;
  const size_t count = 50000;
  for (size_t elem = 4; elem <= 8; elem += 4)
    for (int kind = 0; kind < 3; kind++) {
      uint8_t *a = malloc(count * elem), *b = malloc(count * elem);
      fill_adam(a, count, elem, kind, 7 + kind);
      /* the next checkpoint: every value nudged by ~1e-3 relative */
      memcpy(b, a, count * elem);
      uint64_t seed = 99;
      for (size_t i = 0; i < count; i++) {
        double f = 1 + 1e-3 * rng_normal(&seed);
        if (elem == 4) ((float *)b)[i] *= (float)f;
        else ((double *)b)[i] *= f;
      }
      size_t raw = round_trip(SMOE_ENC_RAW_ZSTD, b, NULL, count * elem, elem);
      size_t shuf = round_trip(SMOE_ENC_SHUFFLE_ZSTD, b, NULL, count * elem, elem);
      size_t xor = round_trip(SMOE_ENC_XOR_SHUFFLE_ZSTD, b, a, count * elem, elem);
      /* shuffling never hurts on floats, the delta of a small change pays */
      assert_true(shuf <= raw);
      assert_true(xor < shuf);
      /* odd byte length: the tail bytes go through unshuffled */
      round_trip(SMOE_ENC_XOR_SHUFFLE_ZSTD, b, a, count * elem - 3, elem);
      free(a);
      free(b);
    }
}

static void test_delta_chain(void **state) {
  (void)state;
  const size_t count = 20000, n = count * sizeof(float), V = 6;
  float *ver = malloc(n * V);
  fill_adam(ver, count, 4, 0, 5);
  uint64_t seed = 3;
  for (size_t v = 1; v < V; v++)
    for (size_t i = 0; i < count; i++)
      ver[v * count + i] = ver[(v - 1) * count + i] - 1e-4f * (float)rng_normal(&seed);
  /* chunk 0 full, chunk v the delta against version v-1 */
  size_t cap = smoe_codec_bound(n);
  uint8_t *chunks = malloc(cap * V);
  size_t len[6];
  smoe_err_t err = {{0}};
  for (size_t v = 0; v < V; v++) {
    int64_t l = smoe_codec_encode(v ? SMOE_ENC_XOR_SHUFFLE_ZSTD : SMOE_ENC_SHUFFLE_ZSTD, 3,
                                  ver + v * count, v ? ver + (v - 1) * count : NULL, n, 4,
                                  chunks + v * cap, cap, &err);
    if (l < 0) fail_msg("encode %zu: %s", v, err.msg);
    len[v] = (size_t)l;
  }
  /* restore: full, then apply each delta to the previous restored version */
  float *cur = malloc(n), *next = malloc(n);
  assert_int_equal(smoe_codec_decode(chunks, len[0], NULL, cur, n, &err), 0);
  assert_memory_equal(cur, ver, n);
  for (size_t v = 1; v < V; v++) {
    if (smoe_codec_decode(chunks + v * cap, len[v], cur, next, n, &err) != 0)
      fail_msg("delta %zu: %s", v, err.msg);
    assert_memory_equal(next, ver + v * count, n);
    float *t = cur;
    cur = next;
    next = t;
  }
  /* a delta applied to the wrong base fails its checksum */
  assert_int_equal(smoe_codec_decode(chunks + 2 * cap, len[2], ver, next, n, &err), -1);
  assert_non_null(strstr(err.msg, "checksum"));
  free(ver);
  free(chunks);
  free(cur);
  free(next);
}

/* A valid chunk of the given encoding, for the malformed cases to spoil. */
typedef struct {
  uint8_t *chunk, *data, *base, *out;
  size_t len, n;
} fixture_t;

static fixture_t make(smoe_enc_t enc) {
  fixture_t f;
  f.n = 4000 * 4;
  f.data = malloc(f.n);
  f.base = malloc(f.n);
  f.out = malloc(f.n);
  fill_adam(f.data, 4000, 4, 1, 11);
  fill_adam(f.base, 4000, 4, 1, 12);
  f.chunk = malloc(smoe_codec_bound(f.n));
  smoe_err_t err = {{0}};
  int64_t l = smoe_codec_encode(enc, 3, f.data, enc == SMOE_ENC_XOR_SHUFFLE_ZSTD ? f.base : NULL,
                                f.n, 4, f.chunk, smoe_codec_bound(f.n), &err);
  assert_true(l > 0);
  f.len = (size_t)l;
  return f;
}
static void drop(fixture_t *f) {
  free(f->chunk);
  free(f->data);
  free(f->base);
  free(f->out);
}

/* Decoding fails and the message contains `what`. */
static void expect_reject(const uint8_t *chunk, size_t len, const void *base, void *out,
                          size_t n, const char *what) {
  smoe_err_t err = {{0}};
  int rc = smoe_codec_decode(chunk, len, base, out, n, &err);
  if (rc != -1 || !strstr(err.msg, what))
    fail_msg("expected a rejection mentioning \"%s\", got rc %d: \"%s\"", what, rc, err.msg);
}

static void test_malformed(void **state) {
  (void)state;
  fixture_t f = make(SMOE_ENC_SHUFFLE_ZSTD);
  uint8_t *c = malloc(f.len);
  smoe_err_t err = {{0}};
#define RESET() memcpy(c, f.chunk, f.len)
  RESET();
  assert_int_equal(smoe_codec_decode(c, f.len, NULL, f.out, f.n, &err), 0);
  for (size_t l = 0; l < SMOE_CODEC_HEADER; l += 7)
    expect_reject(c, l, NULL, f.out, f.n, "shorter than the");
  expect_reject(NULL, 0, NULL, f.out, f.n, "shorter than the");
  c[0] = 'X';
  expect_reject(c, f.len, NULL, f.out, f.n, "bad magic");
  RESET();
  c[4] = 2;
  expect_reject(c, f.len, NULL, f.out, f.n, "version 2");
  RESET();
  c[6] = 9;
  expect_reject(c, f.len, NULL, f.out, f.n, "unknown encoding 9");
  RESET();
  c[6] = 0;
  expect_reject(c, f.len, NULL, f.out, f.n, "unknown encoding 0");
  RESET();
  c[7] = 3;
  expect_reject(c, f.len, NULL, f.out, f.n, "element size 3");
  RESET();
  expect_reject(c, f.len, NULL, f.out, f.n - 4, "expected");
  c[8] ^= 4; /* declared raw length */
  expect_reject(c, f.len, NULL, f.out, f.n, "raw bytes, expected");
  RESET();
  expect_reject(c, f.len - 1, NULL, f.out, f.n, "past the end");
  c[24] += 1; /* stored length one past */
  expect_reject(c, f.len, NULL, f.out, f.n, "past the end");
  RESET();
  c[31] = 0x80; /* a huge stored length */
  expect_reject(c, f.len, NULL, f.out, f.n, "past the end");
  RESET();
  c[SMOE_CODEC_HEADER] ^= 0xff; /* zstd frame magic */
  expect_reject(c, f.len, NULL, f.out, f.n, "zstd");
  RESET();
  /* a shorter declared frame: zstd cannot finish it */
  c[24] -= 5;
  expect_reject(c, f.len, NULL, f.out, f.n, "zstd");
  RESET();
  expect_reject(c, f.len, f.base, f.out, f.n, "but a base chunk was given");
  c[16] ^= 1; /* stored checksum */
  expect_reject(c, f.len, NULL, f.out, f.n, "checksum mismatch");
  /* a flipped payload bit is caught, or (a don't-care bit of the zstd frame)
   * the data comes back intact: never wrong data, never a crash */
  int caught = 0, total = 0;
  for (size_t i = SMOE_CODEC_HEADER; i < f.len; i += 3) {
    RESET();
    c[i] ^= (uint8_t)(1u << (i % 8));
    total++;
    if (smoe_codec_decode(c, f.len, NULL, f.out, f.n, &err) == -1) {
      assert_true(err.msg[0] != '\0');
      caught++;
    } else {
      assert_memory_equal(f.out, f.data, f.n);
    }
  }
  assert_true(caught > total * 99 / 100);
#undef RESET
  free(c);
  drop(&f);

  fixture_t d = make(SMOE_ENC_XOR_SHUFFLE_ZSTD);
  expect_reject(d.chunk, d.len, NULL, d.out, d.n, "no base chunk");
  assert_int_equal(smoe_codec_decode(d.chunk, d.len, d.base, d.out, d.n, &err), 0);
  assert_memory_equal(d.out, d.data, d.n);
  drop(&d);

  /* a flipped payload byte that zstd still decodes (a literal, level 0
   * stores raw blocks): only the checksum catches it */
  const size_t n = 4096;
  uint8_t *data = malloc(n), *out = malloc(n), *chunk = malloc(smoe_codec_bound(n));
  fill_bits(data, n, 42);
  int64_t l = smoe_codec_encode(SMOE_ENC_RAW_ZSTD, 1, data, NULL, n, 4, chunk,
                                smoe_codec_bound(n), &err);
  assert_true(l > 0);
  chunk[l - 100] ^= 0x10;
  expect_reject(chunk, (size_t)l, NULL, out, n, "checksum mismatch");
  free(data);
  free(out);
  free(chunk);
}

static void test_encode_errors(void **state) {
  (void)state;
  smoe_err_t err = {{0}};
  float x[4] = {1, 2, 3, 4};
  uint8_t out[256];
  assert_int_equal(smoe_codec_encode(7, 3, x, NULL, 16, 4, out, sizeof out, &err), -1);
  assert_non_null(strstr(err.msg, "unknown encoding"));
  assert_int_equal(smoe_codec_encode(SMOE_ENC_RAW_ZSTD, 3, x, NULL, 16, 2, out, sizeof out, &err),
                   -1);
  assert_non_null(strstr(err.msg, "element size"));
  assert_int_equal(
      smoe_codec_encode(SMOE_ENC_XOR_SHUFFLE_ZSTD, 3, x, NULL, 16, 4, out, sizeof out, &err), -1);
  assert_non_null(strstr(err.msg, "needs a base"));
  assert_int_equal(smoe_codec_encode(SMOE_ENC_SHUFFLE_ZSTD, 3, x, x, 16, 4, out, sizeof out, &err),
                   -1);
  assert_non_null(strstr(err.msg, "takes no base"));
  assert_int_equal(smoe_codec_encode(SMOE_ENC_RAW_ZSTD, 1000, x, NULL, 16, 4, out, sizeof out, &err),
                   -1);
  assert_non_null(strstr(err.msg, "level"));
  assert_int_equal(smoe_codec_encode(SMOE_ENC_RAW_ZSTD, 3, x, NULL, 16, 4, out, 10, &err), -1);
  assert_non_null(strstr(err.msg, "header"));
  assert_int_equal(smoe_codec_encode(SMOE_ENC_RAW_ZSTD, 3, x, NULL, 16, 4, out, 33, &err), -1);
  assert_non_null(strstr(err.msg, "zstd"));
  /* the hash sees every byte and the length */
  uint8_t a[40] = {0}, b[40] = {0};
  assert_true(smoe_codec_hash(a, 40) == smoe_codec_hash(b, 40));
  assert_true(smoe_codec_hash(a, 40) != smoe_codec_hash(a, 39));
  for (int i = 0; i < 40; i++) {
    b[i] = 1;
    assert_true(smoe_codec_hash(a, 40) != smoe_codec_hash(b, 40));
    b[i] = 0;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_bits),   cmocka_unit_test(test_adam_state),
      cmocka_unit_test(test_delta_chain),   cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_encode_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
