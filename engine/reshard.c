/* reshard.c: a checkpoint re-sliced for another number of ranks (reshard.h). */
#define _XOPEN_SOURCE 700
#include "reshard.h"

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "placement.h"
#include "policy.h"
#include "saver.h"
#include "weights.h"

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st, (void)flag, (void)f;
  return remove(p);
}

void smoe_reshard_remove(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Values [lo, lo + n) of a vector cut into slices of `chunk` over the
 * source ranks (rank q: [q chunk, (q + 1) chunk), at byte `base` + its
 * offset in the slice of `region`), into out. chunk = the whole vector when
 * every rank holds all of it (read from rank 0). */
static int gather_range(smoe_ckpt_weights_t *w, const char *region, size_t base_elems,
                        size_t chunk, size_t lo, size_t n, real *out, size_t *read,
                        smoe_err_t *err) {
  for (size_t x = lo; x < lo + n;) {
    size_t q = x / chunk, in = x - q * chunk, take = chunk - in;
    if (take > lo + n - x) take = lo + n - x;
    if (smoe_ckpt_reader_read(w->r[q], region, (base_elems + in) * sizeof(real),
                              take * sizeof(real), out + (x - lo), err) != 0)
      return -1;
    *read += take * sizeof(real);
    x += take;
  }
  return 0;
}

/* Values [lo, lo + n) of a vector sliced over the old ranks (gather_range),
 * streamed into ck a piece of at most `cap` values at a time through buf. */
static int stream_range(smoe_ckpt_t *ck, smoe_ckpt_weights_t *w, const char *region,
                        size_t base_elems, size_t chunk, size_t lo, size_t n, real *buf,
                        size_t cap, size_t *read, smoe_err_t *err) {
  for (size_t at = 0; at < n; at += cap) {
    size_t take = n - at < cap ? n - at : cap;
    if (gather_range(w, region, base_elems, chunk, lo + at, take, buf, read, err) != 0 ||
        smoe_ckpt_stream_put(ck, buf, take * sizeof(real), err) != 0)
      return -1;
  }
  return 0;
}

/* New rank g's regions, in order, from the old ranks into ck: each expert's
 * new slice (zero-padded past P, as the shards keep it) and the dense slices
 * a piece of `cap` values at a time, then what every rank holds alike. */
static int stream_rank(smoe_ckpt_t *ck, smoe_ckpt_weights_t *w, int M, int g, int replicated,
                       size_t n_dense, const smoe_ckpt_region_t *r, const void *const alike[3],
                       real *buf, size_t cap, size_t *read, smoe_err_t *err) {
  const int L = w->L, E = w->E;
  const size_t P = w->P, chunk = replicated ? P : (P + (size_t)M - 1) / (size_t)M;
  const size_t lo = replicated ? 0 : (size_t)g * chunk;
  const size_t len = lo >= P ? 0 : P - lo < chunk ? P - lo : chunk;
  const char *shard[3] = {"master", "exp_avg", "exp_avg_sq"};
  for (int b = 0; b < 3; b++) /* region by region, expert by expert */
    for (int le = 0; le < L * E; le++) {
      if (stream_range(ck, w, shard[b], (size_t)le * w->chunk, w->chunk, lo, len, buf, cap, read,
                       err) != 0)
        return -1;
      memset(buf, 0, sizeof(real) * (chunk - len));
      if (smoe_ckpt_stream_put(ck, buf, sizeof(real) * (chunk - len), err) != 0) return -1;
    }
  const size_t dchunk_old = (n_dense + (size_t)w->G - 1) / (size_t)w->G;
  const size_t dchunk = (n_dense + (size_t)M - 1) / (size_t)M;
  const size_t dlo = (size_t)g * dchunk < n_dense ? (size_t)g * dchunk : n_dense;
  const char *dense[3] = {"dense", "dense_m", "dense_v"};
  for (int b = 0; b < 3; b++)
    if (stream_range(ck, w, dense[b], 0, dchunk_old, dlo, r[3 + b].bytes / sizeof(real), buf, cap,
                     read, err) != 0)
      return -1;
  for (int i = 0; i < 3; i++)
    if (smoe_ckpt_stream_put(ck, alike[i], r[6 + i].bytes, err) != 0) return -1;
  return 0;
}

int smoe_reshard(const smoe_config_t *c, const char *src_state, const char *dst_state, int M,
                 int64_t step, int only, smoe_reshard_result_t *res, smoe_err_t *err) {
  memset(res, 0, sizeof *res);
  const double t0 = smoe_now();
  const int L = c->n_layers, E = c->num_experts;
  if (M < 1) return smoe_fail(err, "--world %d: expected a number of ranks >= 1", M);
  if (c->global_batch_size % M)
    return smoe_fail(err, "--world %d: training.global_batch_size = %d is not divisible by %d "
                     "ranks", M, c->global_batch_size, M);
  int H;
  const int S = smoe_model_slots(c, E, M, &H, err);
  if (S < 0) return -1;
  smoe_model_plan_t mp;
  if (smoe_model_plan(c, M, c->global_batch_size / M, &mp, err) != 0) return -1;
  char path[SMOE_PATHLEN + 48];
  struct stat sb;
  for (int g = 0; g < M; g++) {
    snprintf(path, sizeof path, "%s/rank-%d", dst_state, g);
    if ((only < 0 || g == only) && stat(path, &sb) == 0)
      return smoe_fail(err, "%s exists: reshard writes new stores only (choose another "
                       "destination)", path);
  }
  smoe_ckpt_weights_t w;
  if (smoe_ckpt_weights_open(&w, src_state, step, c, err) != 0) return -1;
  res->step = w.step, res->G_from = w.G, res->G_to = M, res->S_to = S;
  const int replicated = strcmp(c->expert_optimizer, "replicated") == 0;
  const size_t le = (size_t)L * E;
  /* what every rank holds alike, from rank 0 */
  real *bias = xmalloc(sizeof(real) * le);
  double *loads = xmalloc(sizeof(double) * le);
  int64_t pos[4];
  smoe_plog_t rec = {0};
  int rc = smoe_ckpt_reader_read(w.r[0], "expert_bias", 0, sizeof(real) * le, bias, err);
  if (rc == 0) rc = smoe_ckpt_reader_read(w.r[0], "planner_loads", 0, sizeof(double) * le, loads, err);
  if (rc == 0) rc = smoe_ckpt_reader_read(w.r[0], "position", 0, sizeof pos, pos, err);
  if (rc == 0) {
    int found = smoe_plog_read(w.s[0], w.step, &rec, err);
    if (found == 0)
      rc = smoe_fail(err, "rank 0 has no placement record of step %lld, which the checkpoint "
                     "needs", (long long)w.step);
    else if (found < 0)
      rc = -1;
  }
  /* the placement the new world resumes with: the run's policy for M ranks */
  smoe_policy_t pol;
  smoe_placement_t pl;
  smoe_placement_init(&pl, L, E, M, S);
  if (rc == 0) rc = smoe_policy_init(&pol, c->policy, L, E, M, S, c->seed, c->load_ema, err);
  if (rc == 0) smoe_policy_shadow_slots(&pol, H);
  if (rc == 0) {
    smoe_policy_kind_t kind = pol.kind;
    if (kind == SMOE_POLICY_RANDOM) smoe_placement_random(&pl, c->seed, w.step, &pol.scratch);
    else if (kind == SMOE_POLICY_STATIC || kind == SMOE_POLICY_CAPACITY || M == 1 || !pos[3])
      rc = smoe_policy_first(&pol, &pl, err);
    else
      rc = smoe_policy_first_from(&pol, loads, &pl, err);
    smoe_policy_free(&pol);
  }
  smoe_ckpt_opts_t o = smoe_saver_opts(c);
  int made = 0;
  /* the pieces the new state is streamed through: at most a chunk's worth,
   * and at least one expert's new slice (its padding goes through it) */
  const size_t P = w.P, slice = replicated ? P : (P + (size_t)M - 1) / (size_t)M;
  size_t cap = o.chunk_bytes / sizeof(real);
  if (cap < slice) cap = slice;
  real *buf = xmalloc(sizeof(real) * cap);
  const void *alike[3] = {bias, loads, pos};
  for (int g = only < 0 ? 0 : only; g < (only < 0 ? M : only + 1) && rc == 0; g++) {
    smoe_ckpt_region_t r[SMOE_SAVER_REGIONS];
    smoe_ckpt_shape_t shapes[SMOE_SAVER_SHAPES];
    smoe_saver_layout(c, M, g, S, replicated, mp.n_dense, r, shapes);
    size_t state = 0;
    for (int i = 0; i < SMOE_SAVER_REGIONS; i++) state += r[i].bytes;
    smoe_ckpt_t *ck = smoe_ckpt_open_stream(dst_state, g, r, SMOE_SAVER_REGIONS, shapes,
                                            SMOE_SAVER_SHAPES, smoe_saver_config_digest(c), &o, err);
    if (!ck) {
      rc = -1;
      break;
    }
    made = g + 1; /* rank-0 .. rank-g may hold what this call wrote */
    smoe_ckpt_stream_begin(ck, w.step);
    rc = stream_rank(ck, &w, M, g, replicated, mp.n_dense, r, alike, buf, cap, &res->bytes_read,
                     err);
    if (rc == 0) rc = smoe_ckpt_stream_end(ck, err);
    if (rc == 0) rc = smoe_ckpt_agreed(ck, 1, err); /* every new rank's is written: complete */
    if (rc == 0) {
      smoe_plog_t mine = {L, E, M, S, w.step, rec.loads, pl.replicas, pl.slot_expert, g, NULL};
      rc = smoe_ckpt_log(ck, &mine, err);
    }
    smoe_ckpt_close(ck); /* the log's batch is written at close */
    res->bytes_written += state;
  }
  res->buffers = sizeof(real) * cap + o.chunk_bytes + smoe_codec_bound(o.chunk_bytes);
  free(buf);
  if (rc != 0) /* nothing half made is left: the new stores go */
    for (int g = only < 0 ? 0 : only; g < made; g++) {
      snprintf(path, sizeof path, "%s/rank-%d", dst_state, g);
      smoe_reshard_remove(path);
    }
  smoe_plog_free(&rec);
  smoe_placement_free(&pl);
  free(bias), free(loads);
  smoe_ckpt_weights_close(&w);
  res->seconds = smoe_now() - t0;
  return rc;
}
