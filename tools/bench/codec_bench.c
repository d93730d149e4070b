/* codec_bench: which checkpoint chunk encoding pays on real optimizer state.
 *
 * Trains the demo model (default config, single process, the loop of
 * engine/train.c without metrics or validation) and snapshots the expert
 * shard state (master, exp_avg, exp_avg_sq) at steps s, s+1, s+10, s+100.
 * For each state it reports the compression ratio (raw bytes / chunk bytes)
 * of raw+zstd and shuffle+zstd of step s+100, and of the XOR delta against
 * step s at intervals 1, 10, 100; plus two experiments outside the codec:
 * "rot" (each fp32 rotated left by one bit before the XOR/shuffle, so
 * the sign moves to bit 0 and the exponent fills one byte plane) and zstd
 * level 9. Then encode/decode MB/s of each codec encoding, all decodes
 * checked bitwise.
 *
 *   codec_bench [--steps S] [--level L] [--out FILE.md] [--json PATH] [--set k=v ...]
 *
 * Writes the markdown table to stdout and to --out (default
 * tools/bench/results/<date>-codec.md). */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "codec.h"
#include "comm.h"
#include "config.h"
#include "data.h"
#include "model.h"
#include "moe.h"
#include "optim.h"
#include "shards.h"
#include "train.h"

#define NSTATE 3
#define NSNAP 4
static const int OFFS[NSNAP] = {0, 1, 10, 100};
static const char *STATE_NAMES[NSTATE] = {"master", "exp_avg", "exp_avg_sq"};

/* the variant's chunk bytes for version `cur` (base `prev` or NULL) */
static size_t encode_size(smoe_enc_t enc, int level, const void *cur, const void *prev, size_t n) {
  size_t cap = smoe_codec_bound(n);
  uint8_t *out = xmalloc(cap);
  smoe_err_t err;
  int64_t l = smoe_codec_encode(enc, level, cur, prev, n, sizeof(real), out, cap, &err);
  if (l < 0) {
    fprintf(stderr, "codec_bench: %s\n", err.msg);
    exit(1);
  }
  uint8_t *back = xmalloc(n);
  if (smoe_codec_decode(out, (size_t)l, prev, back, n, &err) != 0 || memcmp(back, cur, n) != 0) {
    fprintf(stderr, "codec_bench: round trip failed: %s\n", err.msg);
    exit(1);
  }
  free(back);
  free(out);
  return (size_t)l;
}

/* experiment: rotl(x XOR prev, 1) per 32-bit word, then byte planes, then zstd */
static size_t rot_size(int level, const void *cur, const void *prev, size_t n) {
  size_t cnt = n / 4;
  const uint32_t *a = cur, *b = prev;
  uint8_t *sh = xmalloc(n), *z = xmalloc(ZSTD_compressBound(n));
  for (size_t i = 0; i < cnt; i++) {
    uint32_t x = a[i] ^ (b ? b[i] : 0);
    x = (x << 1) | (x >> 31);
    for (int k = 0; k < 4; k++) sh[k * cnt + i] = (uint8_t)(x >> (8 * k));
  }
  size_t l = ZSTD_compress(z, ZSTD_compressBound(n), sh, cnt * 4, level);
  free(sh);
  free(z);
  return l + SMOE_CODEC_HEADER;
}

/* experiment: bit planes of (x XOR prev) per 32-bit word (bit 31 of every
 * word, then bit 30, ...), then zstd */
static size_t bitshuffle_size(int level, const void *cur, const void *prev, size_t n) {
  size_t cnt = n / 4, pb = (cnt + 7) / 8;
  const uint32_t *a = cur, *b = prev;
  uint8_t *sh = xcalloc(32 * pb, 1), *z = xmalloc(ZSTD_compressBound(32 * pb));
  for (size_t i = 0; i < cnt; i++) {
    uint32_t x = a[i] ^ (b ? b[i] : 0);
    for (int k = 0; k < 32; k++)
      sh[(size_t)(31 - k) * pb + i / 8] |= (uint8_t)(((x >> k) & 1u) << (i % 8));
  }
  size_t l = ZSTD_compress(z, ZSTD_compressBound(32 * pb), sh, 32 * pb, level);
  free(sh);
  free(z);
  return l + SMOE_CODEC_HEADER;
}

int main(int argc, char **argv) {
  smoe_config_t c;
  smoe_config_defaults(&c);
  smoe_err_t err;
  int s = 300, level = 3;
  const char *out_md = NULL, *json = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc) s = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--level") && i + 1 < argc) level = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_md = argv[++i];
    else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
      if (smoe_config_set(&c, argv[++i], &err) != 0) {
        fprintf(stderr, "codec_bench: %s\n", err.msg);
        return 2;
      }
    } else {
      fprintf(stderr,
              "usage: codec_bench [--steps S] [--level L] [--out FILE.md] [--json PATH] "
              "[--set section.key=value ...]\n");
      return 2;
    }
  }
  if (s < 1) {
    fprintf(stderr, "codec_bench: --steps must be >= 1\n");
    return 2;
  }
  const int total = s + OFFS[NSNAP - 1];
  c.steps = total;
  if (c.warmup_steps > total) c.warmup_steps = total;
  if (smoe_config_validate(&c, &err) != 0) {
    fprintf(stderr, "codec_bench: %s\n", err.msg);
    return 2;
  }
  smoe_set_threads(c.threads);
  smoe_comm_t *comm = smoe_comm_local();
  smoe_data_t data;
  if (smoe_data_load(&data, c.data_path, c.val_fraction, c.seq_len, &err) != 0) {
    fprintf(stderr, "codec_bench: %s\n", err.msg);
    return 1;
  }
  const int B = c.global_batch_size, T = c.seq_len, L = c.n_layers, E = c.num_experts;
  smoe_model_t m;
  if (smoe_model_init_dist(&m, &c, B, comm, &err) != 0) {
    fprintf(stderr, "codec_bench: %s\n", err.msg);
    return 1;
  }
  smoe_shards_t sh;
  smoe_shards_init(&sh, L, E, smoe_expert_numel(c.dim, c.expert_dim), m.S, comm, 0);
  smoe_shards_load(&sh, m.experts_full);
  real *dm = xcalloc(m.n_dense, sizeof(real)), *dv = xcalloc(m.n_dense, sizeof(real));
  int32_t *batch = xmalloc(sizeof(int32_t) * (size_t)B * (T + 1));
  const size_t n = sh.n * sizeof(real);
  uint8_t *snap = xmalloc(n * NSTATE * NSNAP); /* (snapshot, state, n bytes) */
  real *states[NSTATE] = {sh.master, sh.exp_avg, sh.exp_avg_sq};
  fprintf(stderr, "codec_bench: training %d steps (%s, %zu expert elements per state)\n", total,
          SMOE_REAL_NAME, sh.n);
  double t_train = smoe_now(), loss = 0;
  int next_snap = 0;
  for (int64_t step = 0; step < total; step++) {
    smoe_data_train_batch(&data, c.seed, step, 0, B, T, batch);
    loss = smoe_model_forward(&m, batch, B);
    smoe_model_zero_grad(&m);
    smoe_model_backward(&m);
    smoe_shards_grads(&sh, comm, &m.placement, m.experts_grad);
    double norm = sqrt(smoe_sumsq(m.dense_grad_mem, m.n_dense) + smoe_sumsq(sh.grad, sh.n));
    double clip = smoe_clip_factor(norm, c.grad_clip);
    if (clip < 1.0) {
      smoe_scale(m.dense_grad_mem, m.n_dense, (real)clip);
      smoe_scale(sh.grad, sh.n, (real)clip);
    }
    smoe_adamw_t o = {smoe_lr_at(step, c.warmup_steps, c.steps, c.lr, c.min_lr), c.beta1, c.beta2,
                      c.adam_eps, c.weight_decay};
    smoe_adamw_step(m.dense_mem, m.dense_grad_mem, dm, dv, m.n_dense, &o, step + 1);
    smoe_adamw_step(sh.master, sh.grad, sh.exp_avg, sh.exp_avg_sq, sh.n, &o, step + 1);
    smoe_shards_weights(&sh, comm, &m.placement, m.experts);
    if ((step + 1) % 50 == 0)
      fprintf(stderr, "codec_bench: step %lld, loss %.4f, %.2f s/step\n", (long long)step + 1,
              loss, (smoe_now() - t_train) / (double)(step + 1));
    if (next_snap < NSNAP && step + 1 == s + OFFS[next_snap]) {
      for (int k = 0; k < NSTATE; k++)
        memcpy(snap + ((size_t)next_snap * NSTATE + k) * n, states[k], n);
      next_snap++;
    }
  }
  t_train = smoe_now() - t_train;
  fprintf(stderr, "codec_bench: trained in %.1f s, last loss %.4f\n", t_train, loss);
#define SNAP(i, k) (snap + ((size_t)(i) * NSTATE + (k)) * n)

  /* ratios: columns raw, shuffle, xor@1, xor@10, xor@100, rot-xor@10, xor@10 level 9 */
  enum { NCOL = 9 };
  const char *cols[NCOL] = {"raw+zstd",     "shuffle+zstd",  "xor@1+shuffle", "xor@10+shuffle",
                            "xor@100+shuffle", "rot+shuffle (full)", "rot+xor@10+shuffle",
                            "xor@10+shuffle zstd-9", "xor@10+bitshuffle"};
  size_t stored[NSTATE + 1][NCOL] = {{0}};
  for (int k = 0; k < NSTATE; k++) {
    const uint8_t *s0 = SNAP(0, k), *last = SNAP(3, k);
    size_t v[NCOL] = {
        encode_size(SMOE_ENC_RAW_ZSTD, level, last, NULL, n),
        encode_size(SMOE_ENC_SHUFFLE_ZSTD, level, last, NULL, n),
        encode_size(SMOE_ENC_XOR_SHUFFLE_ZSTD, level, SNAP(1, k), s0, n),
        encode_size(SMOE_ENC_XOR_SHUFFLE_ZSTD, level, SNAP(2, k), s0, n),
        encode_size(SMOE_ENC_XOR_SHUFFLE_ZSTD, level, last, s0, n),
        sizeof(real) == 4 ? rot_size(level, last, NULL, n) : 0,
        sizeof(real) == 4 ? rot_size(level, SNAP(2, k), s0, n) : 0,
        encode_size(SMOE_ENC_XOR_SHUFFLE_ZSTD, 9, SNAP(2, k), s0, n),
        sizeof(real) == 4 ? bitshuffle_size(level, SNAP(2, k), s0, n) : 0,
    };
    for (int j = 0; j < NCOL; j++) {
      stored[k][j] = v[j];
      stored[NSTATE][j] += v[j];
    }
  }

  /* speed: each codec encoding on exp_avg at interval 10, best of 3 */
  const smoe_enc_t encs[3] = {SMOE_ENC_RAW_ZSTD, SMOE_ENC_SHUFFLE_ZSTD, SMOE_ENC_XOR_SHUFFLE_ZSTD};
  double enc_mbs[3], dec_mbs[3];
  size_t cap = smoe_codec_bound(n);
  uint8_t *chunk = xmalloc(cap), *back = xmalloc(n);
  for (int e = 0; e < 3; e++) {
    const void *base = encs[e] == SMOE_ENC_XOR_SHUFFLE_ZSTD ? SNAP(0, 1) : NULL;
    double te = 1e30, td = 1e30;
    int64_t l = 0;
    for (int r = 0; r < 3; r++) {
      double t0 = smoe_now();
      l = smoe_codec_encode(encs[e], level, SNAP(2, 1), base, n, sizeof(real), chunk, cap, &err);
      double t1 = smoe_now();
      int rc = smoe_codec_decode(chunk, (size_t)l, base, back, n, &err);
      double t2 = smoe_now();
      if (l < 0 || rc != 0 || memcmp(back, SNAP(2, 1), n) != 0) {
        fprintf(stderr, "codec_bench: speed round trip failed: %s\n", err.msg);
        return 1;
      }
      if (t1 - t0 < te) te = t1 - t0;
      if (t2 - t1 < td) td = t2 - t1;
    }
    enc_mbs[e] = n / te / 1e6;
    dec_mbs[e] = n / td / 1e6;
  }

  /* the report */
  char date[32], path[SMOE_PATHLEN];
  time_t now = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%d", localtime(&now));
  if (!out_md) {
    snprintf(path, sizeof path, "tools/bench/results/%s-codec.md", date);
    out_md = path;
  }
  FILE *outs[2] = {stdout, fopen(out_md, "w")};
  if (!outs[1]) fprintf(stderr, "codec_bench: cannot write %s\n", out_md);
  for (int f = 0; f < 2 && outs[f]; f++) {
    FILE *o = outs[f];
    fprintf(o, "# Checkpoint chunk codec on real optimizer state (%s)\n\n", date);
    fprintf(o,
            "Demo model (default config: %d layers, dim %d, %d experts, expert_dim %d; %s), "
            "trained in-process with AdamW for %d steps (loss %.3f at the end); expert shard "
            "state snapshotted at steps s = %d, s+1, s+10, s+100, %zu elements (%.1f MB) per "
            "state. zstd level %d unless said. Ratio = raw bytes / chunk bytes (32-byte header "
            "included); every codec column round-trips bitwise. Full encodings are of step "
            "s+100; xor@k is step s+k against step s. `rot` is an experiment outside the codec "
            "(each fp32 rotated left 1 bit so the exponent fills one byte plane), and so is `bitshuffle` (32 bit planes instead of 4 byte planes).\n\n",
            L, c.dim, E, c.expert_dim, SMOE_REAL_NAME, total, loss, s, sh.n, n / 1e6, level);
    fprintf(o, "| state |");
    for (int j = 0; j < NCOL; j++) fprintf(o, " %s |", cols[j]);
    fprintf(o, "\n| --- |");
    for (int j = 0; j < NCOL; j++) fprintf(o, " ---: |");
    fprintf(o, "\n");
    for (int k = 0; k <= NSTATE; k++) {
      fprintf(o, "| %s |", k < NSTATE ? STATE_NAMES[k] : "**all three**");
      size_t raw = k < NSTATE ? n : NSTATE * n;
      for (int j = 0; j < NCOL; j++)
        if (stored[k][j]) fprintf(o, " %.2fx |", (double)raw / stored[k][j]);
        else fprintf(o, " n/a |");
      fprintf(o, "\n");
    }
    double goal = (double)(NSTATE * n) / stored[NSTATE][3];
    fprintf(o, "\nGoal (>= 1.5x over all three states at interval 10, lossless): %.2fx, %s.\n\n",
            goal, goal >= 1.5 ? "met" : "NOT met");
    fprintf(o, "| encoding (exp_avg, xor@10, level %d) | encode MB/s | decode MB/s |\n", level);
    fprintf(o, "| --- | ---: | ---: |\n");
    for (int e = 0; e < 3; e++)
      fprintf(o, "| %s | %.0f | %.0f |\n", smoe_codec_name(encs[e]), enc_mbs[e], dec_mbs[e]);
    fprintf(o, "\nOne thread; best of 3; MB = 10^6 raw bytes.\n");
  }
  if (outs[1]) {
    fclose(outs[1]);
    fprintf(stderr, "codec_bench: wrote %s\n", out_md);
  }
  if (json) {
    FILE *j = fopen(json, "w");
    if (!j) {
      fprintf(stderr, "codec_bench: cannot write %s\n", json);
      return 1;
    }
    fprintf(j, "{\"steps\": %d, \"level\": %d, \"bytes_per_state\": %zu, \"ratios\": {", s, level, n);
    for (int k = 0; k <= NSTATE; k++) {
      fprintf(j, "%s\"%s\": {", k ? ", " : "", k < NSTATE ? STATE_NAMES[k] : "all");
      size_t raw = k < NSTATE ? n : NSTATE * n;
      for (int c2 = 0; c2 < NCOL; c2++)
        fprintf(j, "%s\"%s\": %.4f", c2 ? ", " : "", cols[c2],
                stored[k][c2] ? (double)raw / stored[k][c2] : 0.0);
      fprintf(j, "}");
    }
    fprintf(j, "}, \"mb_s\": {");
    for (int e = 0; e < 3; e++)
      fprintf(j, "%s\"%s\": {\"encode\": %.1f, \"decode\": %.1f}", e ? ", " : "",
              smoe_codec_name(encs[e]), enc_mbs[e], dec_mbs[e]);
    fprintf(j, "}}\n");
    fclose(j);
  }
  free(chunk);
  free(back);
  free(snap);
  free(batch);
  free(dm);
  free(dv);
  smoe_shards_free(&sh);
  smoe_model_free(&m);
  smoe_data_free(&data);
  return 0;
}
