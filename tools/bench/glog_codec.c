/* glog_codec: which encoding pays for the gradient log, on real gradients.
 *
 * Reads every gradient-log record of one rank's store (a run trained with
 * checkpoint.log_gradients = on; the store opened read-only) and encodes each
 * record's gradients again with raw + zstd and shuffle + zstd at zstd levels
 * 1, 3 and 9, in chunks of 4 MiB as the log does; each chunk is decoded and
 * checked bitwise. Prints, per encoding, the ratio (raw bytes / encoded bytes)
 * and the encode and decode rates in MB/s of one thread, as a markdown table.
 *
 *   glog_codec STATE_DIR RANK */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "glog.h"
#include "store.h"

#define CHUNK (4u << 20)

typedef struct {
  smoe_enc_t enc;
  int level;
  double raw, stored, enc_s, dec_s;
} trial_t;

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: glog_codec STATE_DIR RANK\n");
    return 2;
  }
  smoe_err_t err;
  smoe_store_t *s = smoe_store_open_readonly(argv[1], atoi(argv[2]), &err);
  if (!s) {
    fprintf(stderr, "glog_codec: %s\n", err.msg);
    return 1;
  }
  int64_t *steps;
  int n;
  if (smoe_glog_steps(s, &steps, &n, NULL, &err) != 0 || n == 0) {
    fprintf(stderr, "glog_codec: %s\n", n == 0 ? "no gradient-log records" : err.msg);
    return 1;
  }
  trial_t t[] = {{SMOE_ENC_RAW_ZSTD, 1, 0, 0, 0, 0},     {SMOE_ENC_SHUFFLE_ZSTD, 1, 0, 0, 0, 0},
                 {SMOE_ENC_SHUFFLE_ZSTD, 3, 0, 0, 0, 0}, {SMOE_ENC_RAW_ZSTD, 3, 0, 0, 0, 0},
                 {SMOE_ENC_SHUFFLE_ZSTD, 9, 0, 0, 0, 0}};
  const int nt = (int)(sizeof t / sizeof t[0]);
  const size_t cap = smoe_codec_bound(CHUNK);
  uint8_t *out = xmalloc(cap), *back = xmalloc(CHUNK);
  int elem = 0;
  for (int i = 0; i < n; i++) {
    smoe_glog_rec_t r;
    if (smoe_glog_read(s, steps[i], &r, &err) != 1) {
      fprintf(stderr, "glog_codec: %s\n", err.msg);
      return 1;
    }
    for (int p = 0; p < r.n_parts; p++) {
      const size_t bytes = r.part[p].n * (size_t)r.part[p].elem;
      elem = r.part[p].elem;
      for (size_t off = 0; off < bytes; off += CHUNK) {
        const size_t len = bytes - off < CHUNK ? bytes - off : CHUNK;
        const uint8_t *src = (const uint8_t *)r.part[p].grad + off;
        for (int k = 0; k < nt; k++) {
          double t0 = smoe_now();
          int64_t m = smoe_codec_encode(t[k].enc, t[k].level, src, NULL, len, (size_t)elem, out,
                                        cap, &err);
          double t1 = smoe_now();
          if (m < 0 || smoe_codec_decode(out, (size_t)m, NULL, back, len, &err) != 0 ||
              memcmp(back, src, len) != 0) {
            fprintf(stderr, "glog_codec: round trip failed: %s\n", err.msg);
            return 1;
          }
          t[k].enc_s += t1 - t0, t[k].dec_s += smoe_now() - t1;
          t[k].raw += (double)len, t[k].stored += (double)m;
        }
      }
    }
    smoe_glog_rec_free(&r);
  }
  printf("gradient log of %s rank %s: %d records (steps %lld..%lld), %.1f MB of %d-byte "
         "gradients\n\n| encoding | zstd level | ratio | encode MB/s | decode MB/s |\n"
         "|---|---|---|---|---|\n", argv[1], argv[2], n, (long long)steps[0],
         (long long)steps[n - 1], t[0].raw / 1e6, elem);
  for (int k = 0; k < nt; k++)
    printf("| %s | %d | %.3f | %.0f | %.0f |\n", smoe_codec_name(t[k].enc), t[k].level,
           t[k].raw / t[k].stored, t[k].raw / 1e6 / t[k].enc_s, t[k].raw / 1e6 / t[k].dec_s);
  free(out), free(back), free(steps);
  smoe_store_close(s);
  return 0;
}
