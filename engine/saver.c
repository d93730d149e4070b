/* saver.c: one rank's checkpoints during training (see saver.h). */
#define _POSIX_C_SOURCE 200809L
#include "saver.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void write_job(void *arg) {
  smoe_saver_t *sv = arg;
  smoe_ckpt_write(sv->ck);
}
static void write_done(void *arg) {
  smoe_saver_t *sv = arg;
  sv->rc = smoe_ckpt_finish(sv->ck, &sv->err);
  if (!sv->copy) return;
  /* the bundle to rank g+1; an empty one when the write failed (the
   * checkpoint fails everywhere then, but g+1 must not wait for it) */
  size_t n = 0;
  smoe_ckpt_take_bundle(sv->ck, &sv->out_buf, &n);
  sv->out = smoe_comm_send_start(sv->comm, (sv->rank + 1) % sv->G, sv->out_buf, n,
                                 SMOE_PHASE_CKPT_COPY);
}

/* Rank g-1's bundle written into the copy this rank keeps. */
static void copy_job(void *arg) {
  smoe_saver_t *sv = arg;
  if (sv->in_n > 0) smoe_ckpt_copy_write(sv->copy, sv->in_buf, sv->in_n);
}
static void copy_done(void *arg) {
  smoe_saver_t *sv = arg;
  free(sv->in_buf);
  sv->in_buf = NULL;
  sv->in_state = 3;
}

uint64_t smoe_saver_config_digest(const smoe_config_t *c) {
  char *text = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&text, &n);
  if (!f) return 0;
  smoe_config_write(c, f);
  fclose(f);
  uint64_t h = 0x5eed;
  for (size_t i = 0; i < n; i++) h = smoe_mix64(h ^ (uint8_t)text[i]);
  free(text);
  return h;
}

void smoe_saver_dir(const smoe_config_t *c, const char *out_dir, char *dir, size_t n) {
  if (c->ckpt_dir[0])
    snprintf(dir, n, "%s", c->ckpt_dir);
  else
    snprintf(dir, n, "%s/state", out_dir);
}

size_t smoe_saver_staging_plan(const smoe_config_t *c, size_t shard_n, size_t dense_len) {
  const size_t le = (size_t)c->n_layers * c->num_experts, rb = sizeof(real);
  /* the regions of smoe_saver_open: three shard buffers, three dense
   * slices, the bias, the planner's loads and the position */
  size_t total = 3 * shard_n * rb + 3 * dense_len * rb + le * rb + le * sizeof(double) +
                 sizeof(((smoe_saver_t *)0)->pos);
  return smoe_ckpt_staging_for(total, (size_t)c->ckpt_chunk_mb << 20);
}

void smoe_saver_layout(const smoe_config_t *c, int G, int g, int S, int replicated, size_t n_dense,
                       smoe_ckpt_region_t r[SMOE_SAVER_REGIONS],
                       smoe_ckpt_shape_t shapes[SMOE_SAVER_SHAPES]) {
  const size_t le = (size_t)c->n_layers * c->num_experts, rb = sizeof(real);
  const size_t P = 3 * (size_t)c->dim * (size_t)c->expert_dim;
  const size_t chunk = replicated ? P : (P + (size_t)G - 1) / (size_t)G, n = le * chunk;
  const size_t dchunk = (n_dense + (size_t)G - 1) / (size_t)G;
  const size_t lo = (size_t)g * dchunk < n_dense ? (size_t)g * dchunk : n_dense;
  const size_t len = n_dense - lo < dchunk ? n_dense - lo : dchunk;
  const smoe_ckpt_region_t regions[SMOE_SAVER_REGIONS] = {
      {"master", SMOE_CF_SHARD, NULL, n * rb, (int)rb, NULL},
      {"exp_avg", SMOE_CF_SHARD, NULL, n * rb, (int)rb, NULL},
      {"exp_avg_sq", SMOE_CF_SHARD, NULL, n * rb, (int)rb, NULL},
      {"dense", SMOE_CF_DENSE, NULL, len * rb, (int)rb, NULL},
      {"dense_m", SMOE_CF_DENSE, NULL, len * rb, (int)rb, NULL},
      {"dense_v", SMOE_CF_DENSE, NULL, len * rb, (int)rb, NULL},
      {"expert_bias", SMOE_CF_DENSE, NULL, le * rb, (int)rb, NULL},
      {"planner_loads", SMOE_CF_DATA, NULL, le * sizeof(double), 8, NULL},
      {"position", SMOE_CF_DATA, NULL, 4 * sizeof(int64_t), 8, NULL},
  };
  const smoe_ckpt_shape_t sh[SMOE_SAVER_SHAPES] = {
      {"model.vocab_size", c->vocab_size},
      {"model.dim", c->dim},
      {"model.n_layers", c->n_layers},
      {"model.n_heads", c->n_heads},
      {"model.n_kv_heads", c->n_kv_heads},
      {"model.tie_embed", c->tie_word_embeddings},
      {"moe.num_experts", c->num_experts},
      {"moe.expert_dim", c->expert_dim},
      {"ranks", G},
      {"slots_per_rank", S},
      {"precision_bytes", (int64_t)rb},
      {"replicated_optim", replicated},
  };
  memcpy(r, regions, sizeof regions);
  memcpy(shapes, sh, sizeof sh);
}

smoe_ckpt_opts_t smoe_saver_opts(const smoe_config_t *c) {
  return (smoe_ckpt_opts_t){c->ckpt_full_every,    c->ckpt_keep,
                            c->ckpt_level,         (size_t)c->ckpt_chunk_mb << 20,
                            SMOE_ENC_SHUFFLE_ZSTD, SMOE_ENC_XOR_SHUFFLE_ZSTD,
                            (size_t)c->ckpt_plan_log_mb << 20, 0};
}

int smoe_saver_open(smoe_saver_t *sv, const smoe_config_t *c, const char *out_dir, smoe_model_t *m,
                    smoe_shards_t *sh, smoe_policy_t *pol, real *dm, real *dv, smoe_err_t *err) {
  memset(sv, 0, sizeof *sv);
  const int G = m->G, g = m->rank;
  /* this rank's slice of the dense vectors; the moments are only that slice
   * when the dense optimizer is sharded */
  const size_t mo = m->dense_sharded ? 0 : m->dense_lo;
  smoe_ckpt_region_t r[SMOE_SAVER_REGIONS];
  smoe_ckpt_shape_t shapes[SMOE_SAVER_SHAPES];
  smoe_saver_layout(c, G, g, m->S, sh->replicated, m->n_dense, r, shapes);
  void *live[SMOE_SAVER_REGIONS] = {sh->master,   sh->exp_avg,  sh->exp_avg_sq,
                                    m->dense_mem + m->dense_lo, dm + mo, dv + mo,
                                    m->expert_bias, pol->loads, sv->pos};
  for (int i = 0; i < SMOE_SAVER_REGIONS; i++) {
    r[i].data = live[i];
    r[i].ops = i < 6 ? m->ops : NULL; /* the optimizer state is the backend's */
  }
  memcpy(sv->live, r, sizeof r);
  smoe_ckpt_opts_t o = smoe_saver_opts(c);
  o.copy = G > 1 && strcmp(c->ckpt_redundancy, "buddy") == 0;
  char dir[SMOE_PATHLEN + 16];
  smoe_saver_dir(c, out_dir, dir, sizeof dir);
  sv->ck = smoe_ckpt_open(dir, g, r, SMOE_SAVER_REGIONS, shapes, SMOE_SAVER_SHAPES,
                          smoe_saver_config_digest(c), &o, err);
  if (!sv->ck) return -1;
  if (o.copy) {
    sv->copy = smoe_ckpt_open_copy(dir, (g + G - 1) % G, &o, err);
    if (!sv->copy) {
      smoe_ckpt_close(sv->ck);
      return -1;
    }
    sv->comm = m->comm;
  }
  sv->loop = smoe_loop_new(c->ckpt_every_seconds, err);
  if (!sv->loop) {
    smoe_ckpt_close(sv->ck);
    smoe_ckpt_close(sv->copy);
    return -1;
  }
  if (strcmp(c->ckpt_log_gradients, "on") == 0) {
    /* a record: the expert and dense gradient slices (AdamW on master and
     * its moments, on the dense slice and its moments), and whole the bias,
     * the planner's loads and the position */
    smoe_glog_rec_t shape = {.n_parts = 2, .n_whole = 3};
    shape.part[0] = (smoe_glog_part_t){0, 1, 2, (int)sizeof(real), sh->n, NULL};
    shape.part[1] = (smoe_glog_part_t){3, 4, 5, (int)sizeof(real), m->dense_len, NULL};
    for (int i = 0; i < 3; i++) shape.whole[i] = (smoe_glog_whole_t){6 + i, NULL, r[6 + i].bytes};
    sv->gl = smoe_gradlog_open(smoe_ckpt_store(sv->ck), c->ckpt_log_buffers, SMOE_GLOG_LEVEL,
                               o.chunk_bytes, &shape);
    sv->scratch[0] = sh->grad;
    sv->scratch[1] = m->dense_sharded ? m->dense_grad_shard : m->dense_grad_mem + m->dense_lo;
  }
  sv->async = strcmp(c->ckpt_mode, "async") == 0;
  sv->skip_busy = strcmp(c->ckpt_when_busy, "skip") == 0;
  sv->seed = c->seed;
  sv->L = m->dims.L, sv->E = m->dims.E, sv->G = G, sv->S = m->S, sv->rank = g;
  return 0;
}

void smoe_saver_close(smoe_saver_t *sv) {
  smoe_gradlog_close(sv->gl); /* writes what is queued */
  smoe_loop_free(sv->loop); /* waits for a write in flight */
  smoe_ckpt_close(sv->ck);
  smoe_ckpt_close(sv->copy);
  free(sv->out_buf), free(sv->in_buf); /* (a failed run's: the job is ending) */
  smoe_plog_free(&sv->plan);
}

double smoe_saver_stage(smoe_saver_t *sv, int64_t step, int64_t tokens, const smoe_policy_t *pol) {
  sv->pos[0] = (int64_t)sv->seed, sv->pos[1] = step, sv->pos[2] = tokens;
  sv->pos[3] = pol->have_loads;
  double t = smoe_ckpt_stage(sv->ck, step);
  if (sv->copy) { /* g-1's bundle of this step is awaited from now */
    sv->in = smoe_comm_recv_start(sv->comm, (sv->rank + sv->G - 1) % sv->G);
    sv->in_state = 0;
  }
  return t;
}

void smoe_saver_log_post(smoe_saver_t *sv, int64_t step, int64_t tokens, const smoe_policy_t *pol) {
  sv->pos[0] = (int64_t)sv->seed, sv->pos[1] = step, sv->pos[2] = tokens;
  sv->pos[3] = pol->have_loads;
  const void *whole[3] = {sv->live[6].data, sv->live[7].data, sv->live[8].data}, *plan;
  size_t n;
  smoe_ckpt_log_last(sv->ck, &plan, &n); /* the step's placement record, as the placement log has it */
  smoe_gradlog_post(sv->gl, whole, plan, n);
}

int smoe_saver_status(smoe_saver_t *sv) {
  int st = smoe_ckpt_local_status(sv->ck);
  if (!sv->copy || smoe_ckpt_pending(sv->ck) < 0) return st;
  void *buf;
  size_t n;
  if (sv->out && smoe_comm_msg_test(sv->comm, sv->out, &buf, &n)) {
    sv->out = NULL;
    free(sv->out_buf);
    sv->out_buf = NULL;
  }
  if (sv->in && smoe_comm_msg_test(sv->comm, sv->in, &sv->in_buf, &sv->in_n)) {
    sv->in = NULL;
    sv->in_state = 1;
  }
  if (sv->in_state == 1 && !smoe_loop_busy(sv->loop)) { /* the writer is free: the copy's turn */
    sv->in_state = 2;
    smoe_loop_submit(sv->loop, copy_job, copy_done, sv);
  }
  if (st <= 0) return st;
  if (sv->out || sv->in_state != 3) return 0;
  return sv->in_n == 0 ? 1 : smoe_ckpt_copy_status(sv->copy, NULL);
}

double smoe_saver_write(smoe_saver_t *sv, int sync) {
  if (!sync) {
    smoe_loop_submit(sv->loop, write_job, write_done, sv);
    return 0;
  }
  double t0 = smoe_now();
  write_job(sv);
  write_done(sv);
  return smoe_now() - t0;
}

int smoe_saver_agreed(smoe_saver_t *sv, int status, int64_t *global, smoe_err_t *err) {
  int64_t step = smoe_ckpt_pending(sv->ck);
  *global = -1;
  if (step < 0 || status == 0) return 0;
  if (status < 0) {
    if (sv->rc != 0)
      *err = sv->err;
    else if (!sv->copy || smoe_ckpt_copy_status(sv->copy, err) >= 0)
      smoe_fail(err, "the checkpoint of step %lld failed on another rank (see its message)",
                (long long)step);
    smoe_ckpt_agreed(sv->ck, -1, NULL);
    if (sv->copy) smoe_ckpt_agreed(sv->copy, -1, NULL);
    return -1;
  }
  if (smoe_ckpt_agreed(sv->ck, 1, err) != 0) return -1;
  if (sv->copy && smoe_ckpt_agreed(sv->copy, 1, err) != 0) return -1;
  *global = step;
  return 0;
}

int smoe_saver_settle(smoe_saver_t *sv, smoe_comm_t *comm, int64_t *global, double *stall,
                      smoe_err_t *err) {
  *global = -1;
  if (smoe_ckpt_pending(sv->ck) < 0) return 0; /* the same on every rank */
  *stall += smoe_loop_wait(sv->loop);
  int st;
  double t0 = smoe_now();
  while ((st = smoe_saver_status(sv)) == 0) { /* the copies: sends, g-1's bundle, its write */
    if (smoe_loop_busy(sv->loop))
      smoe_loop_wait(sv->loop);
    else
      nanosleep(&(struct timespec){0, 200000}, NULL);
  }
  *stall += smoe_now() - t0;
  int status = (int)smoe_comm_min_i64(comm, st, SMOE_PHASE_OTHER);
  return smoe_saver_agreed(sv, status, global, err);
}

/* The resume check (smoe_ckpt_check_fn): the placement record of `step`, the
 * placement the resumed step runs with, read, checked against this run's
 * shapes and kept in sv->plan. */
static int check_plan(void *arg, int64_t step, uint64_t *fingerprint, smoe_err_t *err) {
  smoe_saver_t *sv = arg;
  smoe_plog_free(&sv->plan);
  int found = smoe_plog_read(smoe_ckpt_store(sv->ck), step, &sv->plan, err);
  if (found == 0)
    return smoe_fail(err,
                     "rank %d: the placement log has no record of step %lld, which the "
                     "checkpoint of that step needs",
                     sv->rank, (long long)step);
  if (found < 0) return -1;
  const smoe_plog_t *p = &sv->plan;
  if (p->L != sv->L || p->E != sv->E || p->G != sv->G || p->S != sv->S)
    return smoe_fail(err,
                     "rank %d: the placement record of step %lld is for L %d, E %d, G %d, "
                     "S %d; this run has L %d, E %d, G %d, S %d",
                     sv->rank, (long long)step, p->L, p->E, p->G, p->S, sv->L, sv->E, sv->G, sv->S);
  *fingerprint = smoe_plog_fingerprint(p);
  return 0;
}

/* The step a resume with the log goes to: `want`, or the newest step that
 * every rank can reach from one of its checkpoints through its log
 * (smoe_glog_reach; a rank without either: -1, then no log is used). */
static int logged_target(smoe_saver_t *sv, smoe_comm_t *comm, int64_t want, int64_t *target,
                         smoe_err_t *err) {
  smoe_store_t *s = smoe_ckpt_store(sv->ck);
  smoe_ckpt_info_t *info = NULL;
  int64_t *steps = NULL;
  int n = 0, ni = 0;
  int rc = smoe_ckpt_list(s, &info, &ni, err);
  if (rc == 0) rc = smoe_glog_steps(s, &steps, &n, NULL, err);
  int64_t *bases = xmalloc(sizeof(int64_t) * (size_t)(ni + 1));
  for (int i = 0; i < ni; i++) bases[i] = info[i].step;
  int64_t reach = rc == 0 ? smoe_glog_reach(steps, n, bases, ni) : -1;
  int64_t base = -1; /* want >= 0: this rank's newest checkpoint at or before it */
  for (int i = 0; i < ni; i++)
    if (info[i].step <= want && info[i].step > base) base = info[i].step;
  free(info), free(steps), free(bases);
  int64_t v[3] = {-reach, -rc, -base}; /* the min reach, any failure, the min base */
  smoe_comm_allreduce_max_i64(comm, v, 3, SMOE_PHASE_OTHER);
  if (v[1] > 0)
    return rc != 0 ? -1 : smoe_fail(err, "another rank could not list its checkpoints or log");
  if (want >= 0 && -v[2] < 0)
    return smoe_fail(err, "--resume %lld: no checkpoint at or before step %lld on every rank "
                     "(the gradient log replays only from one); nothing was changed",
                     (long long)want, (long long)want);
  *target = want >= 0 ? want : -v[0] < 0 ? INT64_MAX : -v[0];
  return 0;
}

/* Replays the log's records step+1..target onto the restored checkpoint of
 * *step (collective): each read and checked everywhere (its chunks, its
 * fit to this run's regions, the placement record of its step, the same on
 * every rank) before any rank applies it. *step = the last step applied. */
static int replay(smoe_saver_t *sv, smoe_comm_t *comm, int64_t *step, int64_t target, int exact,
                  smoe_err_t *err) {
  smoe_store_t *s = smoe_ckpt_store(sv->ck);
  for (int64_t t = *step + 1; t <= target; t++) {
    smoe_plog_t prev = sv->plan; /* the placement of the last step applied */
    memset(&sv->plan, 0, sizeof sv->plan);
    smoe_glog_rec_t rec;
    smoe_err_t e = {{0}};
    uint64_t fp = 0;
    int got = smoe_glog_read(s, t, &rec, &e);
    int ok = got == 1 && smoe_glog_check(&rec, sv->live, SMOE_SAVER_REGIONS, &e) == 0 &&
             check_plan(sv, t, &fp, &e) == 0;
    if (got == 0)
      smoe_fail(&e, "rank %d has no gradient log record of step %lld", sv->rank, (long long)t);
    int64_t v[3] = {!ok, (int64_t)(fp >> 1), -(int64_t)(fp >> 1)};
    smoe_comm_allreduce_max_i64(comm, v, 3, SMOE_PHASE_OTHER);
    if (v[0] == 0 && v[1] != -v[2])
      ok = 0, v[0] = 1, smoe_fail(&e, "the ranks' placement records of step %lld differ", (long long)t);
    if (v[0] == 0) {
      smoe_glog_apply(&rec, sv->live, sv->scratch);
      smoe_plog_free(&prev);
    } else {
      smoe_plog_free(&sv->plan);
      sv->plan = prev;
    }
    if (got == 1) smoe_glog_rec_free(&rec);
    if (v[0] == 0) {
      *step = t;
      sv->replayed++;
      continue;
    }
    if (!ok) fprintf(stderr, "swiftmoe: [rank %d] gradient log: %s\n", sv->rank, e.msg);
    if (exact)
      return smoe_fail(err, "--resume %lld: the gradient log replays only to step %lld (%s)",
                       (long long)target, (long long)(t - 1),
                       ok ? "see the other ranks' messages" : e.msg);
    if (smoe_comm_rank(comm) == 0)
      fprintf(stderr, "swiftmoe: the gradient log cannot be replayed past step %lld on every "
              "rank (its record of step %lld is missing or damaged somewhere): resuming at step "
              "%lld\n", (long long)(t - 1), (long long)t, (long long)(t - 1));
    break;
  }
  return 0;
}

int smoe_saver_resume(smoe_saver_t *sv, smoe_comm_t *comm, int64_t want, smoe_model_t *m,
                      smoe_shards_t *sh, smoe_policy_t *pol, real *dm, real *dv, int64_t *start,
                      smoe_err_t *err) {
  *start = 0;
  sv->replayed = 0, sv->replay_base = -1;
  int64_t step, target = want;
  if (sv->gl && logged_target(sv, comm, want, &target, err) != 0) return -1;
  if (smoe_ckpt_resume(sv->ck, comm, sv->gl ? -1 : want, sv->gl ? target : INT64_MAX, check_plan,
                       sv, &step, err) != 0)
    return -1;
  sv->replay_base = step;
  if (sv->gl && step >= 0 && replay(sv, comm, &step, target, want >= 0, err) != 0) return -1;
  if (smoe_ckpt_discard_after(sv->ck, step, err) != 0) return -1;
  if (sv->copy) {
    /* the copy of g-1's follows its owner: nothing after the step; and when
     * any rank's copy lacks the step (a node came back with an empty disk),
     * every rank's next checkpoint is a full one, which starts it again */
    if (smoe_ckpt_discard_after(sv->copy, step, err) != 0) return -1;
    int64_t held = step < 0 || smoe_ckpt_holds(sv->copy, step);
    if (smoe_comm_min_i64(comm, held, SMOE_PHASE_OTHER) == 0) smoe_ckpt_next_full(sv->ck);
  }
  if (step < 0) return 0;
  /* this rank's regions are back; the dense vectors from every rank's slice
   * (the moments only when every rank keeps all of them) */
  const size_t n = m->n_dense, chunk = m->dense_chunk, lo = m->dense_lo, len = m->dense_len;
  real *send = xcalloc(chunk + 1, sizeof(real)), *recv = xmalloc(sizeof(real) * chunk * sv->G + 1);
  real *bufs[3] = {m->dense_mem, dm, dv};
  for (int b = 0; b < (m->dense_sharded ? 1 : 3); b++) {
    memset(send, 0, sizeof(real) * chunk);
    m->ops->to_host(send, bufs[b] + lo, sizeof(real) * len);
    smoe_comm_allgather(comm, send, recv, sizeof(real) * chunk, SMOE_PHASE_OTHER);
    m->ops->to_device(bufs[b], recv, sizeof(real) * n);
  }
  free(send), free(recv);
  pol->have_loads = (int)sv->pos[3];
  /* the checked placement (every rank holds the same), and the replicas */
  smoe_placement_t p;
  smoe_placement_init(&p, sv->L, sv->E, sv->G, sv->S);
  memcpy(p.slot_expert, sv->plan.slot_expert, sizeof(int) * (size_t)sv->L * sv->G * sv->S);
  smoe_placement_count_replicas(&p);
  smoe_model_set_placement(m, &p);
  smoe_shards_weights(sh, comm, &p, m->experts);
  smoe_placement_free(&p);
  smoe_plog_free(&sv->plan);
  *start = step;
  return 0;
}
