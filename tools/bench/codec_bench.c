/* codec_bench: which checkpoint chunk encoding pays on real optimizer state.
 *
 * Trains the demo model (default config, single process, the engine's step
 * (step.h) without metrics or validation; the learning-rate schedule is
 * training.steps long) and snapshots the expert shard state (master, exp_avg,
 * exp_avg_sq) at steps s, s+1, s+10, s+100 for every s given. For each s,
 * state and interval k in {1, 10, 100} it reports the ratio (raw bytes /
 * chunk bytes) of every codec encoding (full ones of step s+k, the delta of
 * step s+k against step s) and of experiments outside the codec (fp32 only),
 * then encode/decode MB/s. Codec chunks and the `sub` experiment are decoded
 * and checked bitwise.
 *
 *   codec_bench [--steps S[,S...]] [--level L] [--out FILE.md] [--json PATH]
 *               [--save DIR] [--load DIR] [--set section.key=value ...]
 *
 * Writes the markdown tables to stdout and to --out (default
 * tools/bench/results/<date>-codec.md). --save writes the raw snapshots to
 * DIR/snapshots.bin, --load reads them instead of training (same --steps and
 * --set). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "codec.h"
#include "comm.h"
#include "config.h"
#include "data.h"
#include "optim.h"
#include "step.h"
#include "train.h"

#define NSTATE 3
#define NOFF 4
#define NINT 3
#define MAXPOINT 8
static const int OFFS[NOFF] = {0, 1, 10, 100}; /* snapshot j is step s + OFFS[j] */
static const char *STATE_NAMES[NSTATE] = {"master", "exp_avg", "exp_avg_sq"};

/* What is measured: the codec's encodings, then experiments (fp32 only). */
enum { V_RAW, V_SHUF, V_XOR, V_BITS, V_SPLIT, V_SUB, V_ULP, V_PRED, V_SUB19, V_ADAM, V_CTX, NVAR };
static const char *VAR_NAMES[NVAR] = {"raw+zstd (full)",
                                      "shuffle+zstd (full)",
                                      "xor+shuffle+zstd",
                                      "xor+bitshuffle",
                                      "xor+shuffle, 2 frames",
                                      "sub+zigzag+shuffle",
                                      "ulp-sub+zigzag+shuffle",
                                      "sub vs beta^k*base",
                                      "sub+zigzag+shuffle zstd-19",
                                      "master: sub vs Adam fit",
                                      "context coder of sub (estimate)"};
static const char *VAR_NOTES[NVAR] = {
    "codec encoding 1, of step s+k",
    "codec encoding 2, of step s+k",
    "codec encoding 3, step s+k against step s",
    "32 bit planes of the XOR instead of 4 byte planes",
    "the XOR's byte planes as two zstd frames: sign/exponent and top mantissa byte, then the "
    "two low mantissa bytes",
    "the difference of the bit patterns as uint32 (cur - base), zigzag, byte planes, zstd",
    "the same on order-preserving integers (the difference in ulps, sign-aware)",
    "sub against a prediction a restore can recompute: exp_avg beta1^k * base, exp_avg_sq "
    "beta2^k * base (fp32 multiply); master has none (its base, i.e. sub)",
    "sub at zstd level 19 (about 3.5 MB/s to encode)",
    "master only: sub against p_s + a*u_s + b*u_{s+k} + c*p_s, u = m / (sqrt(v) + eps), a, b, "
    "c least-squares fitted per chunk (would need exp_avg, exp_avg_sq decoded first and three "
    "numbers in the header); exp_avg and exp_avg_sq as in sub",
    "not an encoding: the size an ideal adaptive coder of sub would reach coding each "
    "element's bit length in the context of the base's exponent byte, plus the bits below the "
    "leading one raw (64 bytes of model cost per used context)"};

typedef struct {
  ZSTD_CCtx *cctx;
  uint8_t *z;      /* zstd output, zcap bytes */
  uint8_t *planes; /* n bytes */
  uint32_t *r;     /* n / 4 residuals */
  size_t n, cnt, zcap;
} work_t;

static void die(const char *what) {
  fprintf(stderr, "codec_bench: %s\n", what);
  exit(1);
}

static size_t zsize(work_t *w, const uint8_t *p, size_t len, int level) {
  size_t l = ZSTD_compressCCtx(w->cctx, w->z, w->zcap, p, len, level);
  if (ZSTD_isError(l)) die(ZSTD_getErrorName(l));
  return l;
}

static uint32_t bits32(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static uint32_t zigzag(uint32_t d) {
  return (d << 1) ^ (uint32_t) - (int32_t)(d >> 31);
}
static uint32_t unzigzag(uint32_t z) {
  return (z >> 1) ^ (uint32_t) - (int32_t)(z & 1);
}
/* float bits -> unsigned integers in the floats' order */
static uint32_t ordered(uint32_t u) {
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* w->planes = byte planes of w->r */
static void planes_of(work_t *w) {
  for (size_t i = 0; i < w->cnt; i++)
    for (int k = 0; k < 4; k++) w->planes[(size_t)k * w->cnt + i] = (uint8_t)(w->r[i] >> (8 * k));
}
static size_t planes_size(work_t *w, int level) {
  planes_of(w);
  return SMOE_CODEC_HEADER + zsize(w, w->planes, w->cnt * 4, level);
}

/* a codec encoding's chunk bytes, decoded and checked */
static size_t codec_size(smoe_enc_t enc, int level, const void *cur, const void *base, size_t n) {
  size_t cap = smoe_codec_bound(n);
  uint8_t *out = xmalloc(cap), *back = xmalloc(n);
  smoe_err_t err;
  int64_t l = smoe_codec_encode(enc, level, cur, base, n, sizeof(real), out, cap, &err);
  if (l < 0) die(err.msg);
  if (smoe_codec_decode(out, (size_t)l, base, back, n, &err) != 0 || memcmp(back, cur, n) != 0)
    die("codec round trip failed");
  free(back);
  free(out);
  return (size_t)l;
}

/* sub+zigzag+shuffle+zstd as a codec would do it: encode into w->z, returns
 * the frame bytes; decode back into out (checked by the caller) */
static size_t sub_encode(work_t *w, const uint32_t *cur, const uint32_t *base, int level) {
  for (size_t i = 0; i < w->cnt; i++) w->r[i] = zigzag(cur[i] - base[i]);
  planes_of(w);
  return zsize(w, w->planes, w->cnt * 4, level);
}
static void sub_decode(work_t *w, size_t zlen, const uint32_t *base, uint32_t *out) {
  size_t got = ZSTD_decompress(w->planes, w->cnt * 4, w->z, zlen);
  if (ZSTD_isError(got) || got != w->cnt * 4) die("sub: zstd decode failed");
  const uint8_t *p = w->planes;
  const size_t c = w->cnt;
  for (size_t i = 0; i < c; i++) {
    uint32_t z = (uint32_t)p[i] | (uint32_t)p[c + i] << 8 | (uint32_t)p[2 * c + i] << 16 |
                 (uint32_t)p[3 * c + i] << 24;
    out[i] = base[i] + unzigzag(z);
  }
}

/* 32 bit planes of cur XOR base, then zstd */
static size_t bitshuffle_size(work_t *w, const uint32_t *cur, const uint32_t *base, int level) {
  size_t pb = (w->cnt + 7) / 8;
  uint8_t *sh = xcalloc(32 * pb, 1);
  for (size_t i = 0; i < w->cnt; i++) {
    uint32_t x = cur[i] ^ base[i];
    for (int k = 0; k < 32; k++)
      sh[(size_t)(31 - k) * pb + i / 8] |= (uint8_t)(((x >> k) & 1u) << (i % 8));
  }
  size_t l = SMOE_CODEC_HEADER + zsize(w, sh, 32 * pb, level);
  free(sh);
  return l;
}

/* the estimate V_CTX for the residuals in w->r, context: base exponent byte */
static size_t ctx_estimate(work_t *w, const uint32_t *base) {
  double *h = xcalloc(256 * 33, sizeof(double)), raw = 0, bits = 0;
  for (size_t i = 0; i < w->cnt; i++) {
    int len = w->r[i] ? 32 - __builtin_clz(w->r[i]) : 0;
    h[((base[i] >> 23) & 0xff) * 33 + len]++;
    raw += len > 1 ? len - 1 : 0;
  }
  int used = 0;
  for (int c = 0; c < 256; c++) {
    double t = 0;
    for (int l = 0; l <= 32; l++) t += h[c * 33 + l];
    if (t > 0) used++;
    for (int l = 0; l <= 32; l++)
      if (h[c * 33 + l] > 0) bits -= h[c * 33 + l] * log2(h[c * 33 + l] / t);
  }
  free(h);
  return SMOE_CODEC_HEADER + (size_t)((bits + raw) / 8) + 64 * (size_t)used;
}

/* V_ADAM: master at s+k against a least-squares fit from (m, v) at s and s+k */
static size_t adam_size(work_t *w, const float *p0, const float *p1, const float *m0,
                        const float *v0, const float *m1, const float *v1, int level) {
  double A[3][4] = {{0}}; /* normal equations, right-hand side in column 3 */
  for (size_t i = 0; i < w->cnt; i++) {
    double x[3] = {m0[i] / (sqrt(v0[i]) + 1e-8), m1[i] / (sqrt(v1[i]) + 1e-8), p0[i]};
    double d = (double)p1[i] - p0[i];
    for (int a = 0; a < 3; a++) {
      for (int b = 0; b < 3; b++) A[a][b] += x[a] * x[b];
      A[a][3] += x[a] * d;
    }
  }
  for (int c = 0; c < 3; c++) /* Gauss-Jordan, the matrix is SPD */
    for (int r = 0; r < 3; r++)
      if (r != c && A[c][c] != 0) {
        double f = A[r][c] / A[c][c];
        for (int k = 0; k < 4; k++) A[r][k] -= f * A[c][k];
      }
  double co[3];
  for (int a = 0; a < 3; a++) co[a] = A[a][a] != 0 ? A[a][3] / A[a][a] : 0;
  for (size_t i = 0; i < w->cnt; i++) {
    double u0 = m0[i] / (sqrt(v0[i]) + 1e-8), u1 = m1[i] / (sqrt(v1[i]) + 1e-8);
    float pred = (float)(p0[i] + co[0] * u0 + co[1] * u1 + co[2] * p0[i]);
    w->r[i] = zigzag(bits32(p1[i]) - bits32(pred));
  }
  return planes_size(w, level) + 3 * sizeof(float);
}

/* Sizes of every variant for one state at interval OFFS[j]; 0 = n/a. snaps[j][st] is
 * snapshot j's state st of this point. */
static void measure(work_t *w, int level, int st, int j, const double betas[NSTATE],
                    const uint8_t *const snaps[NOFF][NSTATE], size_t out[NVAR]) {
  const size_t n = w->n;
  const uint8_t *base = snaps[0][st], *cur = snaps[j][st];
  memset(out, 0, NVAR * sizeof(size_t));
  out[V_RAW] = codec_size(SMOE_ENC_RAW_ZSTD, level, cur, NULL, n);
  out[V_SHUF] = codec_size(SMOE_ENC_SHUFFLE_ZSTD, level, cur, NULL, n);
  out[V_XOR] = codec_size(SMOE_ENC_XOR_SHUFFLE_ZSTD, level, cur, base, n);
  if (sizeof(real) != 4) return;
  const uint32_t *c = (const uint32_t *)cur, *b = (const uint32_t *)base;
  out[V_BITS] = bitshuffle_size(w, c, b, level);
  for (size_t i = 0; i < w->cnt; i++) w->r[i] = c[i] ^ b[i];
  planes_of(w);
  out[V_SPLIT] = SMOE_CODEC_HEADER + 8 + zsize(w, w->planes + 2 * w->cnt, 2 * w->cnt, level) +
                 zsize(w, w->planes, 2 * w->cnt, level);
  for (size_t i = 0; i < w->cnt; i++) w->r[i] = zigzag(c[i] - b[i]);
  out[V_SUB] = planes_size(w, level);
  out[V_SUB19] = SMOE_CODEC_HEADER + zsize(w, w->planes, 4 * w->cnt, 19);
  out[V_CTX] = ctx_estimate(w, b);
  for (size_t i = 0; i < w->cnt; i++) w->r[i] = zigzag(ordered(c[i]) - ordered(b[i]));
  out[V_ULP] = planes_size(w, level);
  out[V_PRED] = out[V_ADAM] = out[V_SUB];
  if (betas[st] > 0) {
    const float f = (float)pow(betas[st], OFFS[j]), *bf = (const float *)base;
    for (size_t i = 0; i < w->cnt; i++) w->r[i] = zigzag(c[i] - bits32(bf[i] * f));
    out[V_PRED] = planes_size(w, level);
  }
  if (st == 0)
    out[V_ADAM] = adam_size(w, (const float *)base, (const float *)cur, (const float *)snaps[0][1],
                            (const float *)snaps[0][2], (const float *)snaps[j][1],
                            (const float *)snaps[j][2], level);
}

/* encode and decode MB/s, best of 3, of exp_avg at interval 10 */
enum { NSPEED = 5 };
static const char *SPEED_NAMES[NSPEED] = {"raw+zstd", "shuffle+zstd", "xor+shuffle+zstd",
                                          "sub+zigzag+shuffle", "sub+zigzag+shuffle zstd-19"};
static void speeds(work_t *w, int level, const uint8_t *cur, const uint8_t *base,
                   double mbs[NSPEED][2]) {
  const size_t n = w->n, cap = smoe_codec_bound(n);
  uint8_t *chunk = xmalloc(cap), *back = xmalloc(n);
  smoe_err_t err;
  for (int e = 0; e < NSPEED; e++) {
    mbs[e][0] = mbs[e][1] = 0;
    if (e >= 3 && sizeof(real) != 4) continue;
    double te = 1e30, td = 1e30;
    for (int r = 0; r < 3; r++) {
      double t0 = smoe_now(), t1, t2;
      int ok;
      if (e < 3) {
        smoe_enc_t enc = (smoe_enc_t)(e + 1);
        const void *b = enc == SMOE_ENC_XOR_SHUFFLE_ZSTD ? base : NULL;
        int64_t l = smoe_codec_encode(enc, level, cur, b, n, sizeof(real), chunk, cap, &err);
        t1 = smoe_now();
        ok = l > 0 && smoe_codec_decode(chunk, (size_t)l, b, back, n, &err) == 0;
      } else {
        size_t zl =
            sub_encode(w, (const uint32_t *)cur, (const uint32_t *)base, e == 3 ? level : 19);
        t1 = smoe_now();
        sub_decode(w, zl, (const uint32_t *)base, (uint32_t *)back);
        ok = 1;
      }
      t2 = smoe_now();
      if (!ok || memcmp(back, cur, n) != 0) die("speed round trip failed");
      if (t1 - t0 < te) te = t1 - t0;
      if (t2 - t1 < td) td = t2 - t1;
      if (e == 4) break; /* level 19 is slow; once is enough */
    }
    mbs[e][0] = n / te / 1e6;
    mbs[e][1] = n / td / 1e6;
  }
  free(chunk);
  free(back);
}

static double ratio(size_t raw, size_t stored) {
  return stored ? (double)raw / stored : 0;
}

int main(int argc, char **argv) {
  smoe_config_t c;
  smoe_config_defaults(&c);
  smoe_err_t err;
  int points[MAXPOINT] = {500}, npoint = 1, level = 3;
  const char *out_md = NULL, *json = NULL, *save_dir = NULL, *load_dir = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    i++;
    if (!strcmp(a, "--steps")) {
      npoint = 0;
      for (const char *p = v; *p;) {
        char *end;
        long s = strtol(p, &end, 10);
        if (end == p || s < 1 || s > 100000000 || npoint == MAXPOINT) goto usage;
        if (npoint && s <= points[npoint - 1]) {
          fprintf(stderr, "codec_bench: --steps must be increasing\n");
          return 2;
        }
        points[npoint++] = (int)s;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') goto usage;
      }
      if (!npoint) goto usage;
    } else if (!strcmp(a, "--level"))
      level = atoi(v);
    else if (!strcmp(a, "--out"))
      out_md = v;
    else if (!strcmp(a, "--json"))
      json = v;
    else if (!strcmp(a, "--save"))
      save_dir = v;
    else if (!strcmp(a, "--load"))
      load_dir = v;
    else if (!strcmp(a, "--set")) {
      if (smoe_config_set(&c, v, &err) != 0) {
        fprintf(stderr, "codec_bench: %s\n", err.msg);
        return 2;
      }
    } else
      goto usage;
  }
  const int total = points[npoint - 1] + OFFS[NOFF - 1];
  if (c.steps < total) c.steps = total; /* the lr schedule: training.steps, or longer if needed */
  if (smoe_config_validate(&c, &err) != 0) {
    fprintf(stderr, "codec_bench: %s\n", err.msg);
    return 2;
  }
  smoe_set_threads(c.threads);
  smoe_comm_t *comm = smoe_comm_local();
  smoe_data_t data;
  if (smoe_data_load(&data, c.data_path, c.val_fraction, c.seq_len, &err) != 0) die(err.msg);
  const int B = c.global_batch_size, T = c.seq_len, L = c.n_layers, E = c.num_experts;
  smoe_step_ctx_t x; /* the engine's own step (step.h), on one process */
  if (smoe_step_init(&x, &c, B, comm, NULL, &err) != 0) die(err.msg);
  const smoe_shards_t sh = x.sh;
  const size_t n = sh.n * sizeof(real), nsnap = (size_t)npoint * NOFF * NSTATE;
  uint8_t *snap = xmalloc(n * nsnap); /* (point, offset, state, n bytes) */
#define SNAP(p, j, k) (snap + (((size_t)(p)*NOFF + (j)) * NSTATE + (k)) * n)
  double loss = NAN, t_train = 0;
  char path[SMOE_PATHLEN];
  if (load_dir) {
    snprintf(path, sizeof path, "%s/snapshots.bin", load_dir);
    FILE *f = fopen(path, "rb");
    if (!f || fread(snap, 1, n * nsnap, f) != n * nsnap || fgetc(f) != EOF) {
      fprintf(stderr, "codec_bench: cannot read %zu bytes of snapshots from %s\n", n * nsnap, path);
      return 1;
    }
    fclose(f);
  } else {
    int32_t *batch = xmalloc(sizeof(int32_t) * (size_t)B * (T + 1));
    real *states[NSTATE] = {sh.master, sh.exp_avg, sh.exp_avg_sq};
    fprintf(stderr,
            "codec_bench: training %d steps of a %d-step schedule (%s, %zu expert "
            "elements per state)\n",
            total, c.steps, SMOE_REAL_NAME, sh.n);
    t_train = smoe_now();
    for (int64_t step = 0; step < total; step++) {
      smoe_data_train_batch(&data, c.seed, step, 0, B, T, batch);
      smoe_step_out_t so;
      if (smoe_step(&x, batch, step, NULL, &so, &err) != 0) die(err.msg);
      loss = so.loss;
      if ((step + 1) % 50 == 0)
        fprintf(stderr, "codec_bench: step %lld, loss %.4f, %.2f s/step\n", (long long)step + 1,
                loss, (smoe_now() - t_train) / (double)(step + 1));
      for (int p = 0; p < npoint; p++)
        for (int j = 0; j < NOFF; j++)
          if (step + 1 == points[p] + OFFS[j])
            for (int k = 0; k < NSTATE; k++) memcpy(SNAP(p, j, k), states[k], n);
    }
    t_train = smoe_now() - t_train;
    fprintf(stderr, "codec_bench: trained in %.1f s, last loss %.4f\n", t_train, loss);
    free(batch);
  }
  if (save_dir) {
    snprintf(path, sizeof path, "%s/snapshots.bin", save_dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(snap, 1, n * nsnap, f) != n * nsnap || fclose(f) != 0) {
      fprintf(stderr, "codec_bench: cannot write %s\n", path);
      return 1;
    }
  }

  /* stored[p][interval][state or all][variant] */
  work_t w = {ZSTD_createCCtx(), NULL, NULL, NULL, n, n / 4, ZSTD_compressBound(n)};
  w.z = xmalloc(w.zcap);
  w.planes = xmalloc(n);
  w.r = xmalloc(n);
  const double betas[NSTATE] = {0, c.beta1, c.beta2};
  size_t(*stored)[NINT][NSTATE + 1][NVAR] = xcalloc((size_t)npoint, sizeof *stored);
  for (int p = 0; p < npoint; p++) {
    const uint8_t *snaps[NOFF][NSTATE];
    for (int j = 0; j < NOFF; j++)
      for (int k = 0; k < NSTATE; k++) snaps[j][k] = SNAP(p, j, k);
    for (int j = 1; j < NOFF; j++)
      for (int k = 0; k < NSTATE; k++) {
        size_t v[NVAR];
        measure(&w, level, k, j, betas, snaps, v);
        for (int x = 0; x < NVAR; x++) {
          stored[p][j - 1][k][x] = v[x];
          /* all three: only where every state has the variant */
          size_t *all = &stored[p][j - 1][NSTATE][x];
          *all = (k == 0 || *all) && v[x] ? *all + v[x] : 0;
        }
      }
    fprintf(stderr, "codec_bench: measured s = %d\n", points[p]);
  }
  double mbs[NSPEED][2];
  speeds(&w, level, SNAP(0, 2, 1), SNAP(0, 0, 1), mbs);

  /* the report */
  char date[32];
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
            "Demo model (%d layers, dim %d, %d experts, expert_dim %d; %s; global batch %d), "
            "trained in-process with AdamW (lr %g -> %g cosine over %d steps, warmup %d, beta1 "
            "%g, beta2 %g); expert shard state snapshotted at s, s+1, s+10, s+100; %zu elements "
            "(%.1f MB) per state. zstd level %d unless said. Ratio = raw bytes / stored bytes "
            "(32-byte header included). `@k`: full encodings are of step s+k, deltas of step "
            "s+k against step s. All three = the three states' raw bytes over their stored "
            "bytes.\n\n",
            L, c.dim, E, c.expert_dim, SMOE_REAL_NAME, B, c.lr, c.min_lr, c.steps,
            smoe_config_warmup(&c),
            c.beta1, c.beta2, sh.n, n / 1e6, level);
    fprintf(o, "Rows:\n\n");
    for (int x = 0; x < NVAR; x++) fprintf(o, "- `%s`: %s.\n", VAR_NAMES[x], VAR_NOTES[x]);
    for (int p = 0; p < npoint; p++) {
      fprintf(o, "\n## s = %d (lr at s: %.2e)\n\n| variant |", points[p],
              smoe_lr_at(points[p], smoe_config_warmup(&c), c.steps, c.lr, c.min_lr));
      for (int j = 1; j < NOFF; j++)
        fprintf(o, " master@%d | exp_avg@%d | exp_avg_sq@%d | **all@%d** |", OFFS[j], OFFS[j],
                OFFS[j], OFFS[j]);
      fprintf(o, "\n| --- |");
      for (int j = 0; j < NINT * (NSTATE + 1); j++) fprintf(o, " ---: |");
      fprintf(o, "\n");
      for (int x = 0; x < NVAR; x++) {
        fprintf(o, "| %s |", VAR_NAMES[x]);
        for (int j = 0; j < NINT; j++)
          for (int k = 0; k <= NSTATE; k++) {
            size_t st = stored[p][j][k][x], raw = k < NSTATE ? n : NSTATE * n;
            if (!st)
              fprintf(o, " n/a |");
            else if (k == NSTATE)
              fprintf(o, " **%.3f** |", ratio(raw, st));
            else
              fprintf(o, " %.3f |", ratio(raw, st));
          }
        fprintf(o, "\n");
      }
    }
    fprintf(o, "\nGoal (>= 1.5x over all three states at interval 10, lossless): best variant");
    for (int p = 0; p < npoint; p++) {
      double best = 0;
      int bx = 0;
      for (int x = 0; x < NVAR; x++)
        if (x != V_CTX && ratio(NSTATE * n, stored[p][1][NSTATE][x]) > best) {
          best = ratio(NSTATE * n, stored[p][1][NSTATE][x]);
          bx = x;
        }
      fprintf(o, "%s s = %d: %.3fx (%s), %s", p ? ";" : "", points[p], best, VAR_NAMES[bx],
              best >= 1.5 ? "met" : "NOT met");
    }
    fprintf(o, ".\n\n");
    fprintf(o, "| encoding (exp_avg, s = %d, @10) | encode MB/s | decode MB/s |\n", points[0]);
    fprintf(o, "| --- | ---: | ---: |\n");
    for (int e = 0; e < NSPEED; e++)
      if (mbs[e][0] > 0) fprintf(o, "| %s | %.0f | %.0f |\n", SPEED_NAMES[e], mbs[e][0], mbs[e][1]);
    fprintf(o,
            "\nOne thread; best of 3 (zstd-19: one run); MB = 10^6 raw bytes; every row "
            "decoded and compared bitwise.\n");
  }
  if (outs[1]) {
    fclose(outs[1]);
    fprintf(stderr, "codec_bench: wrote %s\n", out_md);
  }
  if (json) {
    FILE *j = fopen(json, "w");
    if (!j) die("cannot write the --json file");
    fprintf(j, "{\"level\": %d, \"bytes_per_state\": %zu, \"schedule_steps\": %d, \"points\": [",
            level, n, c.steps);
    for (int p = 0; p < npoint; p++) {
      fprintf(j, "%s{\"s\": %d, \"ratios\": {", p ? ", " : "", points[p]);
      for (int x = 0; x < NVAR; x++) {
        fprintf(j, "%s\"%s\": {", x ? ", " : "", VAR_NAMES[x]);
        for (int q = 0; q < NINT; q++)
          for (int k = 0; k <= NSTATE; k++) {
            size_t raw = k < NSTATE ? n : NSTATE * n;
            fprintf(j, "%s\"%s@%d\": %.4f", q || k ? ", " : "", k < NSTATE ? STATE_NAMES[k] : "all",
                    OFFS[q + 1], ratio(raw, stored[p][q][k][x]));
          }
        fprintf(j, "}");
      }
      fprintf(j, "}}");
    }
    fprintf(j, "], \"mb_s\": {");
    for (int e = 0; e < NSPEED; e++)
      fprintf(j, "%s\"%s\": {\"encode\": %.1f, \"decode\": %.1f}", e ? ", " : "", SPEED_NAMES[e],
              mbs[e][0], mbs[e][1]);
    fprintf(j, "}}\n");
    fclose(j);
  }
  ZSTD_freeCCtx(w.cctx);
  free(w.z);
  free(w.planes);
  free(w.r);
  free(stored);
  free(snap);
  smoe_step_free(&x);
  smoe_data_free(&data);
  return 0;

usage:
  fprintf(stderr,
          "usage: codec_bench [--steps S[,S...]] [--level L] [--out FILE.md] [--json PATH]\n"
          "                   [--save DIR] [--load DIR] [--set section.key=value ...]\n");
  return 2;
}
