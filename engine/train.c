/* train.c: the run around the step (step.h): the run folder and its lock,
 * setup and resume (run_open), the loop with its control plane, validation,
 * checkpoints and metrics (run_loop, run_after_step), and the final weights
 * and summary (run_finish). */
#define _DEFAULT_SOURCE /* flock */
#include "train.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <omp.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval.h"
#include "hf.h"
#include "metrics.h"
#include "moe.h"
#include "reshard.h"
#include "sample.h"
#include "saver.h"
#include "step.h"

void openblas_set_num_threads(int);

int smoe_set_threads(int threads) {
  if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (threads <= 0) threads = 1;
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  return threads;
}

/* mkdir -p */
static int make_dirs(const char *path, smoe_err_t *err) {
  char buf[SMOE_PATHLEN];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return smoe_fail(err, "output path too long: %s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return smoe_fail(err, "cannot create %s: %s", buf, strerror(errno));
      *p = c;
      if (!c) break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return smoe_fail(err, "output path %s exists and is not a folder", path);
  return 0;
}

/* Validation loss: the first `windows` consecutive windows of the split. */
static double validate(smoe_model_t *m, const smoe_data_t *d, int64_t windows) {
  smoe_eval_result_t r;
  size_t n = smoe_mul((size_t)windows, (size_t)m->dims.T + 1);
  smoe_eval_tokens(m, d->val, n < d->n_val ? n : d->n_val, &r);
  return r.loss;
}

/* The control values every step agrees on (smoe_step_ctl_t): a signal seen
 * anywhere, the checkpoint timer, whether a checkpoint writer is still busy,
 * and the pending checkpoint's worst status (negated: the max is the worst). */
static void read_control(void *arg, int64_t *v) {
  smoe_saver_t *sv = arg;
  smoe_loop_poll(sv->loop);
  v[0] = smoe_loop_signal(sv->loop) != 0;
  v[1] = smoe_loop_timer_fired(sv->loop);
  v[2] = smoe_loop_busy(sv->loop);
  v[3] = -smoe_saver_status(sv);
  if (sv->gl) { /* the gradient log: the newest step on disk (negated: the max is the min) */
    int failed;
    v[4] = -smoe_gradlog_durable(sv->gl, &failed, NULL);
    v[5] = failed;
  }
}


/* What the static placement (expert e on rank e / (E/G)) would have cost on
 * this step's global loads: max over ranks / mean, averaged over layers; 0
 * when E is not divisible by G. */
static double static_imbalance(const smoe_model_t *m) {
  const int L = m->dims.L, E = m->dims.E, G = m->G;
  if (E % G) return 0;
  double sum = 0;
  for (int l = 0; l < L; l++) {
    int64_t mx = 0, total = 0;
    for (int g = 0; g < G; g++) {
      int64_t r = 0;
      for (int e = g * (E / G); e < (g + 1) * (E / G); e++) r += m->expert_counts[(size_t)l * E + e];
      total += r;
      if (r > mx) mx = r;
    }
    sum += total ? (double)mx * G / (double)total : 1.0;
  }
  return sum / L;
}

/* Tokens each rank computed in each layer (G, L), all-gathered; the
 * imbalance per layer (max over ranks / mean) into imb (L); returns the mean
 * over layers. */
static double gather_load(smoe_model_t *m, int64_t *rank_tokens, double *imb) {
  const int L = m->dims.L, G = m->G;
  int64_t *mine = xmalloc(sizeof(int64_t) * (size_t)L);
  for (int l = 0; l < L; l++) mine[l] = m->plans[l].rows_recv;
  smoe_comm_allgather(m->comm, mine, rank_tokens, sizeof(int64_t) * (size_t)L, SMOE_PHASE_OTHER);
  free(mine);
  double mean_imb = 0;
  for (int l = 0; l < L; l++) {
    int64_t mx = 0, sum = 0;
    for (int g = 0; g < G; g++) {
      int64_t v = rank_tokens[(size_t)g * L + l];
      sum += v;
      if (v > mx) mx = v;
    }
    imb[l] = sum ? (double)mx * G / (double)sum : 1.0;
    mean_imb += imb[l] / L;
  }
  return mean_imb;
}

static int write_summary(const char *dir, const smoe_config_t *c, const smoe_train_result_t *r,
                         int threads, smoe_err_t *err) {
  char path[SMOE_PATHLEN + 32];
  snprintf(path, sizeof path, "%s/summary.json", dir);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "steps", (double)r->steps);
  if (isnan(r->final_train_loss)) /* resumed at the last step: no step of this run measured it */
    cJSON_AddNullToObject(o, "final_train_loss");
  else
    cJSON_AddNumberToObject(o, "final_train_loss", r->final_train_loss);
  cJSON_AddNumberToObject(o, "first_val_loss", r->first_val_loss);
  cJSON_AddNumberToObject(o, "final_val_loss", r->final_val_loss);
  cJSON_AddNumberToObject(o, "wall_time_s", r->wall_s);
  cJSON_AddNumberToObject(o, "train_time_s", r->train_s);
  cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens_per_s);
  cJSON_AddNumberToObject(o, "model_flops_per_s", r->model_flops_per_s);
  cJSON_AddNumberToObject(o, "ranks", r->ranks);
  cJSON_AddStringToObject(o, "policy", c->policy);
  cJSON_AddNumberToObject(o, "mean_imbalance", r->mean_imbalance);
  if (r->static_imbalance > 0) /* static needs E divisible by G */
    cJSON_AddNumberToObject(o, "static_imbalance_replayed", r->static_imbalance);
  cJSON_AddNumberToObject(o, "dropped_tokens", (double)r->dropped_tokens);
  cJSON_AddStringToObject(o, "expert_optimizer", c->expert_optimizer);
  cJSON_AddNumberToObject(o, "expert_optimizer_bytes_per_rank", (double)r->expert_optimizer_bytes);
  cJSON_AddNumberToObject(o, "optimizer_bytes_per_rank", (double)r->optimizer_bytes);
  cJSON *mem = cJSON_AddObjectToObject(o, "memory_bytes_per_rank"); /* rank 0's, by kind */
  for (int i = 0; i < SMOE_MEM_KINDS; i++)
    cJSON_AddNumberToObject(mem, smoe_mem_names[i], (double)r->memory.bytes[i]);
  cJSON_AddNumberToObject(o, "checkpoints", r->checkpoints);
  cJSON_AddNumberToObject(o, "checkpoint_stall_s", r->ckpt_stall_s);
  cJSON_AddNumberToObject(o, "first_step_s", r->first_step_s);
  if (r->resume_s > 0) cJSON_AddNumberToObject(o, "resume_s", r->resume_s);
  if (r->replayed > 0) cJSON_AddNumberToObject(o, "resume_replayed_steps", (double)r->replayed);
  if (r->log_records > 0) { /* rank 0's gradient log */
    cJSON *g = cJSON_AddObjectToObject(o, "gradient_log");
    cJSON_AddNumberToObject(g, "records", (double)r->log_records);
    cJSON_AddNumberToObject(g, "raw_bytes", (double)r->log_raw_bytes);
    cJSON_AddNumberToObject(g, "stored_bytes", (double)r->log_stored_bytes);
    cJSON_AddNumberToObject(g, "write_s", r->log_write_s);
    cJSON_AddNumberToObject(g, "stall_s", r->log_stall_s);
  }
  cJSON_AddNumberToObject(o, "threads", threads);
  cJSON_AddStringToObject(o, "precision", SMOE_REAL_NAME);
  cJSON_AddStringToObject(o, "device", c->device);
  cJSON_AddStringToObject(o, "gemm_dtype", c->dtype);
  cJSON_AddNumberToObject(o, "seed", (double)c->seed);
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  FILE *f = fopen(path, "w");
  int bad = !f || !s || fprintf(f, "%s\n", s) < 0;
  if (f && fclose(f) != 0) bad = 1;
  free(s);
  if (bad) return smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
  return 0;
}


/* --- the run folder ------------------------------------------------------- */

#define LOCK_NAME ".swiftmoe.lock"

/* Takes the run folder's lock (rank 0, before it writes anything there): a
 * second job on the same folder stops here, not after rewriting the first
 * one's config.ini. Returns the descriptor that holds it until closed (at
 * exit, whatever the exit), or -1 with err. */
static int lock_run_folder(const char *dir, smoe_err_t *err) {
  char path[SMOE_PATHLEN + 32];
  snprintf(path, sizeof path, "%s/" LOCK_NAME, dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return smoe_fail(err, "cannot create %s: %s", path, strerror(errno));
  char pid[32] = "";
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    close(fd);
    return smoe_fail(err, "%s is in use by another swiftmoe job%s%s%s: its lock %s is held; wait "
                     "for that job to end, or use another --out", dir, pid[0] ? " (pid " : "", pid,
                     pid[0] ? ")" : "", LOCK_NAME);
  }
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  int ok = ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) == len;
  (void)ok; /* the pid only serves the message above */
  return fd;
}

/* The names in the run folder that an earlier run left (everything but the
 * lock and the state folder, whose checkpoints are surveyed apart), as "a, b"
 * in list; returns how many. */
static int earlier_files(const char *dir, char *list, size_t n) {
  list[0] = '\0';
  struct dirent **e = NULL;
  int k = scandir(dir, &e, NULL, alphasort), count = 0;
  for (int i = 0; i < k; i++) {
    const char *name = e[i]->d_name;
    if (strcmp(name, ".") && strcmp(name, "..") && strcmp(name, LOCK_NAME) && strcmp(name, "state"))
      smoe_append(list, n, "%s%s", count++ ? ", " : "", name);
    free(e[i]);
  }
  free(e);
  return count;
}

/* What one rank's state store holds, as all-gathered. */
typedef struct {
  int64_t store;  /* the store exists */
  int64_t count, newest, newest_global, G; /* smoe_ckpt_survey_t */
} survey_t;

/* "rank 2" or "ranks 2, 3" for the ranks where want(s) holds; the count. */
static int say_ranks(char *b, size_t n, const survey_t *s, int G, int (*want)(const survey_t *)) {
  int k = 0;
  for (int g = 0; g < G; g++) k += want(&s[g]);
  smoe_append(b, n, "rank%s", k > 1 ? "s" : "");
  for (int g = 0, i = 0; g < G; g++)
    if (want(&s[g])) smoe_append(b, n, "%s %d", i++ ? "," : "", g);
  return k;
}
static int holds(const survey_t *s) { return s->count > 0; }
static int no_store(const survey_t *s) { return !s->store; }
static int empty_store(const survey_t *s) { return s->store && s->count == 0; }

/* What a run may do with what its folder and the ranks' stores hold (pure):
 * 0 to go on, or the exit code with msg. A fresh run needs an empty folder
 * (or --overwrite); a resume needs checkpoints on every rank, or none ever
 * agreed (a crash during the first checkpoint leaves some ranks with it). */
static int decide(int64_t resume, const char *dir, const char *state, int files,
                  const char *names, const survey_t *s, int G, char *msg, size_t n) {
  int with = 0, wrote_G = 0;
  int64_t newest = -1, complete = INT64_MAX;
  for (int g = 0; g < G; g++) {
    if (!s[g].count) continue;
    with++;
    if (s[g].newest > newest) newest = s[g].newest, wrote_G = (int)s[g].G;
    if (s[g].newest_global < complete) complete = s[g].newest_global;
  }
  msg[0] = '\0';
  if (resume == SMOE_RESUME_OVERWRITE) return 0;
  if (resume == SMOE_RESUME_NONE) {
    if (!with && !files) return 0;
    smoe_append(msg, n, "%s already holds a run (", dir);
    if (with == G && complete >= 0)
      smoe_append(msg, n, "its newest complete checkpoint is step %lld", (long long)complete);
    else if (with)
      smoe_append(msg, n, "checkpoints up to step %lld on %d of %d ranks", (long long)newest, with,
                  G);
    else
      smoe_append(msg, n, "no checkpoint");
    smoe_append(msg, n, "%s%s): continue it with --resume auto, or start over with --overwrite, "
                "which deletes its checkpoints and results", files ? "; " : "", files ? names : "");
    return 2;
  }
  /* some ranks without checkpoints: refused only once a checkpoint was agreed
   * (every rank held it); before that, they are an unfinished first write */
  int agreed = 0;
  for (int g = 0; g < G; g++) agreed |= s[g].newest_global >= 0;
  if (with == 0 || with == G || !agreed) return 0;
  int missing = 0, empty = 0;
  for (int g = 0; g < G; g++) missing += no_store(&s[g]), empty += empty_store(&s[g]);
  smoe_append(msg, n, "--resume: in %s, ", state);
  if (missing) {
    say_ranks(msg, n, s, G, no_store);
    smoe_append(msg, n, " %s no state store%s", missing > 1 ? "have" : "has",
                empty ? " and " : "");
  }
  if (empty) {
    say_ranks(msg, n, s, G, empty_store);
    smoe_append(msg, n, " %s no checkpoint", empty > 1 ? "hold" : "holds");
  }
  smoe_append(msg, n, ", while ");
  say_ranks(msg, n, s, G, holds);
  smoe_append(msg, n, " %s checkpoints up to step %lld", with > 1 ? "hold" : "holds",
              (long long)newest);
  if (wrote_G > 0 && wrote_G != G)
    smoe_append(msg, n, " (written by %d ranks; this job has %d)", wrote_G, G);
  smoe_append(msg, n, ": a rank's store is missing (a node replaced with an empty disk?) and the "
              "next rank kept no copy of it (copy/ in that folder); restore it and resume, or start "
              "over with --overwrite. Nothing was changed");
  return 1;
}

/* Rank 0 locks the run folder and lists what an earlier run left there; each
 * rank surveys its store (read-only: nothing is created or changed); then
 * every rank takes the same decision (decide). On a refusal returns -1 with
 * res->refused set on every rank. *lock: the lock's descriptor on rank 0,
 * else -1; *earlier: whether the folder held an earlier run. */
/* --resume on another number of ranks than the checkpoint's (collective):
 * every rank reshards its own new store (reshard.h) into <state>.reshard,
 * reading from the old stores only the chunks that hold its slices; rank 0
 * then keeps the old stores as <state>.from-G<n> and puts the new ones in
 * their place, and every rank resumes as usual. Needs the run folder's own
 * state/ (not a checkpoint.dir) on a filesystem every rank sees. Nothing
 * happens when the checkpoint is this world's. */
static int reshard_on_resume(const smoe_config_t *c, const char *state, int64_t resume,
                             smoe_comm_t *comm, smoe_err_t *err) {
  const int rank = smoe_comm_rank(comm), G = smoe_comm_size(comm);
  int64_t v[2] = {0, 0}; /* the checkpoint's G (0: nothing to do); a failure anywhere */
  if (rank == 0) {
    smoe_err_t e;
    int copy;
    smoe_store_t *s = smoe_ckpt_open_rank(state, 0, &copy, &e);
    smoe_ckpt_survey_t sv;
    if (s && smoe_ckpt_survey(s, &sv, &e) == 0 && sv.count > 0 && sv.G > 0 && sv.G != G)
      v[0] = sv.G; /* (an unreadable store: the survey after this says so) */
    smoe_store_close(s);
  }
  char tmp[SMOE_PATHLEN + 32], old[SMOE_PATHLEN + 48];
  snprintf(tmp, sizeof tmp, "%s.reshard", state);
  if (rank == 0 && v[0] > 0) { /* the new stores' folder */
    snprintf(old, sizeof old, "%s.from-G%lld", state, (long long)v[0]);
    struct stat sb;
    if (c->ckpt_dir[0])
      v[1] = 1, smoe_fail(err, "--resume: the checkpoints in %s were written by %lld ranks, this "
                          "job has %d: reshard them first (swiftmoe ckpt reshard SRC DST --world %d)",
                          state, (long long)v[0], G, G);
    else if (stat(old, &sb) == 0 || stat(tmp, &sb) == 0)
      v[1] = 1, smoe_fail(err, "--resume on %d ranks: %s or %s exists (an earlier reshard?); move "
                          "it away first", G, old, tmp);
    else if (mkdir(tmp, 0777) != 0)
      v[1] = 1, smoe_fail(err, "cannot create %s: %s", tmp, strerror(errno));
  }
  smoe_comm_allreduce_max_i64(comm, v, 2, SMOE_PHASE_OTHER);
  if (v[0] == 0) return 0;
  smoe_reshard_result_t r;
  if (v[1] == 0 && smoe_reshard(c, state, tmp, G, resume > 0 ? resume : -1, rank, &r, err) != 0)
    v[1] = 1;
  int64_t w[2] = {v[1], v[1] ? 0 : (int64_t)r.bytes_read}; /* failures; the most bytes read */
  smoe_comm_allreduce_max_i64(comm, w, 2, SMOE_PHASE_OTHER);
  if (rank == 0 && w[0] == 0) {
    snprintf(old, sizeof old, "%s.from-G%lld", state, (long long)v[0]);
    if (rename(state, old) != 0 || rename(tmp, state) != 0)
      w[0] = 1, smoe_fail(err, "cannot move the resharded stores into %s: %s", state,
                          strerror(errno));
    else
      fprintf(stderr, "swiftmoe: resharded the checkpoint of step %lld from %d to %d ranks in %.2f "
              "s, each rank reading at most %.1f MB of %d ranks' state; the %d-rank stores are kept "
              "in %s\n", (long long)r.step, r.G_from, r.G_to, r.seconds, w[1] / 1e6, r.G_from,
              r.G_from, old);
  }
  if (rank == 0 && w[0] != 0 && !v[1]) smoe_reshard_remove(tmp);
  int64_t done = w[0];
  smoe_comm_allreduce_max_i64(comm, &done, 1, SMOE_PHASE_OTHER);
  if (done && !err->msg[0]) smoe_fail(err, "the checkpoint could not be resharded for %d ranks "
                                      "(see the first rank's message)", G);
  return done ? -1 : 0;
}

/* --resume with some ranks' stores missing (a node replaced with an empty
 * disk), on the world that wrote them (collective): rank g's store is
 * rebuilt from the copy rank g+1 keeps of it (checkpoint.redundancy), sent
 * over the control plane, so that rank g+1's disk is the only one that must
 * hold it. Ranks whose store and copy are both gone stay missing: the
 * survey after this refuses the resume, naming them. */
static int restore_from_copies(const char *state, smoe_comm_t *comm, smoe_err_t *err) {
  const int rank = smoe_comm_rank(comm), G = smoe_comm_size(comm);
  if (G < 2) return 0;
  char copies[SMOE_PATHLEN + 32];
  smoe_ckpt_copy_dir(state, copies, sizeof copies);
  int64_t mine[2] = {smoe_store_exists(state, rank), smoe_store_exists(copies, (rank + G - 1) % G)};
  int64_t *all = xmalloc(sizeof mine * (size_t)G);
  smoe_comm_allgather(comm, mine, all, sizeof mine, SMOE_PHASE_OTHER);
  int any = 0, rc = 0;
  for (int g = 0; g < G; g++) any |= all[2 * g] != 0;
  for (int g = 0; g < G && any; g++) {
    const int h = (g + 1) % G; /* the rank that keeps g's copy */
    if (all[2 * g] || !all[2 * h + 1]) continue;
    void *buf = NULL;
    size_t n = 0;
    double t0 = smoe_now();
    if (rank == h) { /* an empty message when the copy cannot be read: g says so */
      smoe_err_t e;
      smoe_store_t *s = smoe_store_open_readonly(copies, g, &e);
      if (!s || smoe_ckpt_bundle_store(s, &buf, &n, &e) != 0)
        fprintf(stderr, "swiftmoe: [rank %d] cannot read the copy of rank %d's store: %s\n", h,
                g, e.msg);
      smoe_store_close(s);
      smoe_comm_msg_wait(comm, smoe_comm_send_start(comm, g, buf, n, SMOE_PHASE_CKPT_COPY), NULL,
                         NULL, NULL);
    } else if (rank == g) {
      smoe_comm_msg_wait(comm, smoe_comm_recv_start(comm, h), &buf, &n, NULL);
      if (n == 0)
        rc = smoe_fail(err, "--resume: rank %d's state store is missing from %s and rank %d "
                       "could not read the copy it keeps (see its message)", g, state, h);
      else if (smoe_ckpt_restore_copy(state, g, buf, n, err) != 0)
        rc = -1;
      else
        fprintf(stderr, "swiftmoe: rank %d's state store was missing from %s: restored from the "
                "copy rank %d keeps (%.1f MB in %.2f s)\n", g, state, h, (double)n / 1e6,
                smoe_now() - t0);
    }
    free(buf);
  }
  free(all);
  if (smoe_comm_min_i64(comm, rc, SMOE_PHASE_OTHER) < 0 && rc == 0)
    rc = smoe_fail(err, "a rank's state store could not be restored from its copy (see rank "
                   "messages)");
  return rc;
}

static int prepare_run_folder(const smoe_config_t *c, const char *out_dir, int64_t resume,
                              smoe_comm_t *comm, int *lock, int *earlier,
                              smoe_train_result_t *res, smoe_err_t *err) {
  const int rank = smoe_comm_rank(comm), G = smoe_comm_size(comm);
  *lock = -1;
  char names[256] = "";
  int files = 0;
  if (rank == 0) {
    if (make_dirs(out_dir, err) != 0 || (*lock = lock_run_folder(out_dir, err)) < 0) return -1;
    files = earlier_files(out_dir, names, sizeof names);
  }
  char state[SMOE_PATHLEN + 16];
  smoe_saver_dir(c, out_dir, state, sizeof state);
  if (resume != SMOE_RESUME_NONE && resume != SMOE_RESUME_OVERWRITE &&
      (reshard_on_resume(c, state, resume, comm, err) != 0 ||
       restore_from_copies(state, comm, err) != 0))
    return -1;
  survey_t mine = {smoe_store_exists(state, rank), 0, -1, -1, 0};
  if (mine.store) {
    smoe_store_t *s = smoe_store_open_readonly(state, rank, err);
    smoe_ckpt_survey_t sv;
    if (!s || smoe_ckpt_survey(s, &sv, err) != 0) {
      smoe_store_close(s);
      return -1;
    }
    smoe_store_close(s);
    mine = (survey_t){1, sv.count, sv.newest, sv.newest_global, sv.G};
  }
  int64_t flag = files; /* rank 0's files, to every rank */
  smoe_comm_allreduce_max_i64(comm, &flag, 1, SMOE_PHASE_OTHER);
  survey_t *all = xmalloc(sizeof *all * (size_t)G);
  smoe_comm_allgather(comm, &mine, all, sizeof mine, SMOE_PHASE_OTHER);
  int code = decide(resume, out_dir, state, (int)flag, names, all, G, err->msg, sizeof err->msg);
  *earlier = flag > 0;
  for (int g = 0; g < G; g++) *earlier |= all[g].count > 0;
  free(all);
  if (code) res->refused = code;
  return code ? -1 : 0;
}

/* Rank 0, once the run's state is settled (a resume that fails, say on other
 * shapes, leaves the folder as it was): config.ini, and with --overwrite the
 * earlier run's final weights and summary removed (they are not this run's). */
static int write_run_files(const smoe_config_t *c, const char *out_dir, int64_t resume,
                           smoe_err_t *err) {
  char path[SMOE_PATHLEN + 32];
  snprintf(path, sizeof path, "%s/config.ini", out_dir);
  FILE *f = fopen(path, "w");
  if (!f) return smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
  int bad = smoe_config_write(c, f) != 0;
  if (fclose(f) != 0 || bad) return smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
  static const char *const results[] = {"model.safetensors", "summary.json"};
  for (int i = 0; resume == SMOE_RESUME_OVERWRITE && i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", out_dir, results[i]);
    if (unlink(path) != 0 && errno != ENOENT)
      return smoe_fail(err, "--overwrite: cannot remove %s: %s", path, strerror(errno));
  }
  return 0;
}

/* One run of smoe_train, as its functions share it. */
typedef struct {
  const smoe_config_t *c;
  const char *out_dir;
  smoe_comm_t *comm;
  smoe_train_result_t *res;
  int rank, G, B, T, L, E, threads;
  double t_start;
  smoe_data_t data;
  smoe_step_ctx_t x; /* model, shards, optimizer state, policy: what a step runs on */
  smoe_saver_t sv;
  smoe_metrics_t *mt; /* rank 0 */
  int32_t *batch;       /* (B, T+1) */
  int64_t *rank_tokens; /* (G, L) */
  double *imb;          /* (L) */
  int64_t *counts;      /* (L, E) a step's expert counts, kept across its validation */
  int64_t val_windows;
  int64_t start;     /* the step the run started (or resumed) at */
  int64_t last_ckpt; /* the newest step checkpointed (or resumed from) */
  int64_t tokens;    /* tokens trained, counted from step 0 */
  double imb_sum, static_imb_sum;
  int stop; /* preempted: an agreed SIGTERM/SIGINT */
  double log_stall; /* this step's gradient-log staging */
  int64_t logged;   /* the newest step logged on every rank (agreed), -1 none */
  int64_t announced; /* resumed: the newest step metrics.jsonl announced logged, -1 none */
  /* training.sample_every: rank 0's whole copy of the model and its decoder */
  smoe_model_t smp;
  smoe_decoder_t dec;
  char sample[4096];
} run_t;

/* What rank 0 prints (and, with metrics.all_ranks, every rank). */
#define NOTE(r, ...)                                                      \
  do {                                                                    \
    if ((r)->mt) smoe_metrics_note((r)->mt, __VA_ARGS__);                 \
    else if ((r)->c->all_ranks) {                                         \
      fprintf(stderr, "[rank %d] ", (r)->rank);                           \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

/* The step's on_grads hook: the gradients its optimizer applies, into the
 * gradient log's staging buffer. */
static void log_grads(void *arg, int64_t step, const smoe_adamw_t *o, double clip, double norm,
                      const real *const *grads) {
  run_t *r = arg;
  r->log_stall += smoe_gradlog_grads(r->sv.gl, step, o, clip, norm, r->x.m.ops, grads);
}

static void run_free(run_t *r) {
  smoe_metrics_close(r->mt);
  smoe_decoder_free(&r->dec);
  if (r->smp.ops) smoe_model_free(&r->smp);
  free(r->batch), free(r->rank_tokens), free(r->imb), free(r->counts);
  smoe_step_free(&r->x);
  smoe_data_free(&r->data);
}

/* Threads, data, model and optimizer state, buffers; then the state store
 * and, with --resume, the checkpoint; config.ini and metrics.jsonl. Returns
 * 0, or -1 with err and nothing left open. */
static int run_open(run_t *r, const char *init_hf, int64_t resume, int *removed,
                    int64_t *last_logged, smoe_err_t *err) {
  const smoe_config_t *c = r->c;
  /* threads: the node's cores shared by the ranks on it */
  int threads = c->threads;
  if (threads == 0) {
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN), local = smoe_comm_node_size(r->comm);
    threads = cores / local > 0 ? cores / local : 1;
  }
  r->threads = smoe_set_threads(threads);
  if (smoe_data_load(&r->data, c->data_path, c->val_fraction, c->seq_len, err) != 0) return -1;
  if (r->data.vocab_size > c->vocab_size) {
    smoe_data_free(&r->data);
    return smoe_fail(err,
                     "[model] vocab_size = %d is smaller than the data's vocabulary (%d tokens); "
                     "set model.vocab_size >= %d",
                     c->vocab_size, r->data.vocab_size, r->data.vocab_size);
  }
  if (smoe_step_init(&r->x, c, r->B, r->comm, init_hf, err) != 0) {
    smoe_data_free(&r->data);
    return -1;
  }
  smoe_model_t *m = &r->x.m;
  if (c->sample_every > 0 && r->rank == 0) { /* a world of one on rank 0, weights copied in */
    smoe_config_t one = *c;
    one.init_from[0] = '\0';
    smoe_comm_t *local = smoe_comm_local();
    int rc = smoe_model_init_dist(&r->smp, &one, 1, local, err);
    if (rc == 0) r->smp.own_comm = 1;
    else smoe_comm_finalize(local);
    if (rc == 0) rc = smoe_decoder_init(&r->dec, &r->smp, err);
    if (rc != 0) {
      smoe_step_free(&r->x);
      smoe_data_free(&r->data);
      return -1;
    }
  }
  r->res->expert_optimizer_bytes = r->x.sh.bytes;
  r->res->optimizer_bytes = r->x.sh.bytes + r->x.dense_opt_bytes;
  r->batch = xmalloc(sizeof(int32_t) * (size_t)r->B * (r->T + 1));
  r->rank_tokens = xmalloc(sizeof(int64_t) * (size_t)r->G * r->L);
  r->imb = xmalloc(sizeof(double) * (size_t)r->L);
  r->counts = xmalloc(sizeof(int64_t) * (size_t)r->L * r->E);
  r->val_windows = smoe_data_val_windows(&r->data, r->T);
  if (r->val_windows > c->eval_windows) r->val_windows = c->eval_windows;

  /* the state store and the event loop; then, on --resume, the checkpoint */
  smoe_step_ctx_t *x = &r->x;
  int rc = smoe_saver_open(&r->sv, c, r->out_dir, m, &x->sh, &x->policy, x->dm, x->dv, err);
  if (smoe_comm_min_i64(r->comm, rc, SMOE_PHASE_OTHER) < 0 && rc == 0)
    rc = smoe_fail(err, "another rank could not open its state store (see its message)");
  if (rc != 0) {
    run_free(r);
    return -1;
  }
  if (r->sv.gl) x->on_grads = log_grads, x->grads_arg = r; /* r stays put from here on */
  const int fresh = resume == SMOE_RESUME_NONE || resume == SMOE_RESUME_OVERWRITE;
  int copies = 0;
  if (fresh) rc = smoe_ckpt_start_fresh(r->sv.ck, removed, err);
  if (fresh && rc == 0 && r->sv.copy) rc = smoe_ckpt_start_fresh(r->sv.copy, &copies, err);
  if (!fresh) {
    double t0 = smoe_now();
    rc = smoe_saver_resume(&r->sv, r->comm, resume, m, &x->sh, &x->policy, x->dm, x->dv,
                           &r->start, err);
    if (rc == 0 && r->start > 0 && (uint64_t)r->sv.pos[0] != c->seed && r->rank == 0)
      fprintf(stderr, "swiftmoe: warning: training.seed is %llu, the checkpoint's run used %llu: "
              "the data from here on differs from the interrupted run's\n",
              (unsigned long long)c->seed, (unsigned long long)r->sv.pos[0]);
    r->res->resume_s = smoe_now() - t0;
    r->res->replayed = r->sv.replayed;
  }
  if (rc == 0 && r->rank == 0) rc = write_run_files(c, r->out_dir, resume, err);
  if (rc == 0 && r->rank == 0 &&
      !(r->mt = smoe_metrics_open(r->out_dir, c->progress, c->steps, fresh ? -1 : r->start,
                                  last_logged, &r->announced, err)))
    rc = -1;
  if (rc != 0) {
    smoe_saver_close(&r->sv);
    run_free(r);
    return -1;
  }
  return 0;
}

/* This rank's allocations by kind, checkpoint staging included. */
static void run_memory(run_t *r) {
  smoe_step_memory(&r->x, &r->res->memory);
  r->res->memory.bytes[SMOE_MEM_STAGING] = smoe_ckpt_staging_bytes(r->sv.ck);
}

/* The run's first lines: the model and world, the folder, what a resume found. */
static void run_announce(const run_t *r, const char *init_hf, int64_t resume, int earlier,
                         int removed, int64_t last_logged) {
  const smoe_config_t *c = r->c;
  const smoe_model_t *m = &r->x.m;
  const size_t n_expert = (size_t)r->L * r->E * 3 * c->dim * c->expert_dim;
  NOTE(r, "swiftmoe: %d layers, dim %d, %d experts (top %d), %.2fM parameters (%.2fM active); "
       "%zu train / %zu val tokens from %d files; %d rank%s x %d thread%s, %s, policy %s",
       c->n_layers, c->dim, c->num_experts, c->top_k, (double)(m->n_dense + n_expert) / 1e6,
       (double)(m->n_dense + n_expert / r->E * c->top_k) / 1e6, r->data.n_train, r->data.n_val,
       r->data.n_files, r->G, r->G > 1 ? "s" : "", r->threads, r->threads > 1 ? "s" : "",
       SMOE_REAL_NAME, c->policy);
  if (!m->ops->host_memory) { /* a device: which, and how ranks exchange its memory */
    char dev[256];
    smoe_backend_describe(m->ops, dev, sizeof dev);
    NOTE(r, "device: %s (training.device = %s, GEMM operands %s); data plane: %s", dev,
         c->device, c->dtype, smoe_comm_data_plane(r->comm));
  }
  NOTE(r, "run folder: %s%s%s", r->out_dir, init_hf ? "; weights from " : "",
       init_hf ? init_hf : "");
  char mem[512] = "";
  size_t total = 0;
  for (int i = 0; i < SMOE_MEM_KINDS; i++) {
    size_t b = r->res->memory.bytes[i];
    total += b;
    if (b) smoe_append(mem, sizeof mem, "%s%s %.2f", mem[0] ? ", " : "", smoe_mem_names[i], b / 1e6);
  }
  NOTE(r, "memory per rank (MB): %s; total %.2f (scratch grows in the first step)", mem,
       total / 1e6);
  const int64_t start = r->start;
  if (resume == SMOE_RESUME_OVERWRITE && earlier)
    NOTE(r, "--overwrite: removed the earlier run's %d checkpoint%s, metrics and final weights "
         "from this run folder", removed, removed == 1 ? "" : "s");
  if (resume != SMOE_RESUME_NONE && resume != SMOE_RESUME_OVERWRITE && start == 0)
    NOTE(r, "resume: no checkpoint was ever complete on every rank; starting from step 0");
  if (start > 0 && r->sv.gl)
    NOTE(r, "resumed at step %lld in %.2f s: the checkpoint of step %lld and %lld gradient-log "
         "record%s replayed onto it; %lld step%s lost (the last step logged was %lld, the last "
         "announced on disk on every rank %lld)",
         (long long)start, r->res->resume_s, (long long)r->sv.replay_base,
         (long long)r->res->replayed, r->res->replayed == 1 ? "" : "s",
         (long long)(last_logged > start ? last_logged - start : 0),
         last_logged - start == 1 ? "" : "s", (long long)last_logged, (long long)r->announced);
  else if (start > 0) /* counted from what metrics.jsonl holds: every checkpointed step is in it */
    NOTE(r, "resumed from the checkpoint of step %lld in %.2f s (every rank read its own store); "
         "%lld step%s lost since it (the last step logged was %lld)",
         (long long)start, r->res->resume_s,
         (long long)(last_logged > start ? last_logged - start : 0),
         last_logged - start == 1 ? "" : "s", (long long)last_logged);
  if (start > 0 && r->rank == 0 && last_logged < start)
    NOTE(r, "warning: metrics.jsonl ends at step %lld, before the resumed step %lld: its lines "
         "for steps %lld..%lld are missing (was the file replaced?)", (long long)last_logged,
         (long long)start, (long long)last_logged + 1, (long long)start);
}

/* After step `done`: the load figures, a validation when due, a checkpoint
 * staged when due, the metrics line, then the checkpoint's write. ctl: the
 * step's agreed control values (read_control); global: a checkpoint agreed
 * in the step, or -1. Returns 0, or -1 with err. */
/* Collective (training.sample_every): every expert gathered to rank 0 into
 * its copy of the model, with the dense weights and the selection bias;
 * there a 64-token sample from a new line (token 0 for other vocabularies),
 * seeded by training.seed, into r->sample. Reads the training state, never
 * writes it: the run goes on bit for bit as without it. */
static void run_sample(run_t *r) {
  smoe_model_t *m = &r->x.m, *s = &r->smp;
  const size_t P = smoe_expert_numel(m->dims.D, m->dims.F);
  for (int l = 0; l < r->L; l++)
    for (int e = 0; e < r->E; e++) {
      const real *w = smoe_shards_gather_one(&r->x.sh, r->comm, l, e);
      if (r->rank != 0) continue;
      int slot = 0; /* the copy's placement: one slot per expert */
      while (s->placement.slot_expert[(size_t)l * s->S + slot] != e) slot++;
      s->ops->to_device(s->experts + ((size_t)l * s->S + slot) * P, w, sizeof(real) * P);
    }
  if (r->rank != 0) return;
  s->ops->copy(s->dense_mem, m->dense_mem, s->n_dense < m->n_dense ? s->n_dense : m->n_dense);
  memcpy(s->expert_bias, m->expert_bias, sizeof(real) * (size_t)r->L * r->E);
  s->ops->to_device(s->bias_dev, s->expert_bias, sizeof(real) * (size_t)r->L * r->E);
  int32_t prompt = s->dims.V == 256 ? '\n' : 0;
  int n = 64 < r->T - 1 ? 64 : r->T - 1;
  smoe_sample_text(&r->dec, &prompt, 1, n, 0.8, 40, r->c->seed, r->sample, sizeof r->sample);
}

static int run_after_step(run_t *r, int64_t done, const smoe_step_out_t *so, const int64_t *ctl,
                          int64_t global, double dt, smoe_err_t *err) {
  const smoe_config_t *c = r->c;
  smoe_model_t *m = &r->x.m;
  smoe_train_result_t *res = r->res;
  const int L = r->L, E = r->E;
  /* bytes of this step summed over ranks, then the load */
  int64_t bytes[SMOE_PHASE_COUNT];
  smoe_comm_bytes(r->comm, bytes);
  smoe_comm_allreduce_i64(r->comm, bytes, SMOE_PHASE_COUNT, SMOE_PHASE_OTHER);
  double mean_imb = gather_load(m, r->rank_tokens, r->imb);
  r->imb_sum += mean_imb;
  r->static_imb_sum += static_imbalance(m);
  int64_t dropped = 0;
  for (int l = 0; l < L; l++) dropped += m->dropped[l];
  res->dropped_tokens += dropped;
  r->stop = ctl[0] > 0;
  int eval = !r->stop && (done == c->steps || (c->eval_every > 0 && done % c->eval_every == 0));
  const int sampled = c->sample_every > 0 && done % c->sample_every == 0;
  if (sampled) { /* its gathers' bytes are not the step's: counted before, reset after */
    run_sample(r);
    NOTE(r, "sample after step %lld:\n%s", (long long)done, r->sample);
  }
  double val_loss = -1;
  /* the counts belong to the training batch: kept across a validation */
  memcpy(r->counts, m->expert_counts, sizeof(int64_t) * (size_t)L * E);
  if (eval) val_loss = res->final_val_loss = validate(m, &r->data, r->val_windows);

  /* a checkpoint of the state after `done` steps: every interval, when the
   * timer fired on some rank, and (synchronously) when preempted. A write
   * still pending from an earlier checkpoint is finished and agreed first,
   * so every checkpoint written is agreed or reported. The state is staged
   * now and written after this step's metrics line: a checkpoint is never
   * complete before its step is logged, so a resume leaves no hole in
   * metrics.jsonl. */
  smoe_saver_t *sv = &r->sv;
  int due = r->stop || ctl[1] > 0 || (c->ckpt_interval > 0 && done % c->ckpt_interval == 0);
  const char *ckpt = NULL;
  double stall = 0;
  int write = 0, sync = r->stop || !sv->async;
  if (due && done != r->last_ckpt && isfinite(so->loss)) {
    if (!r->stop && ctl[2] > 0 && sv->skip_busy) {
      ckpt = "skipped";
    } else {
      int64_t settled;
      if (smoe_saver_settle(sv, r->comm, &settled, &stall, err) != 0) return -1;
      if (settled >= 0) {
        NOTE(r, "checkpoint of step %lld complete on every rank", (long long)settled);
        global = settled;
      }
      stall += smoe_saver_stage(sv, done, r->tokens, &r->x.policy);
      ckpt = sync ? "sync" : "async";
      write = 1;
      r->last_ckpt = done;
    }
    smoe_loop_timer_reset(sv->loop);
  }
  smoe_step_record_t rec = {
      .step = done, .loss = so->loss, .ce = so->ce, .aux_loss = so->aux, .z_loss = so->z,
      .lr = so->lr, .grad_norm = so->grad_norm, .val_loss = val_loss, .tokens = r->tokens,
      .step_tokens = (int64_t)c->global_batch_size * r->T, .step_time_s = dt,
      .expert_counts = r->counts, .L = L, .E = E, .G = r->G, .rank_tokens = r->rank_tokens,
      .imbalance = mean_imb, .layer_imbalance = r->imb, .dropped = dropped, .bytes = bytes,
      .shadows = so->shadows,
      .replicas = r->x.replicas, .plan_time_s = so->plan_s, .split_time_s = m->split_time,
      .ckpt = ckpt, .ckpt_stall_s = stall, .ckpt_global = global,
      .logged = r->sv.gl ? r->logged : -1, .log_stall_s = r->log_stall,
      .sample = sampled && r->rank == 0 ? r->sample : NULL};
  res->final_train_loss = so->ce;
  res->checkpoints += write;
  smoe_comm_reset_bytes(r->comm);
  if (r->mt && smoe_metrics_step(r->mt, &rec,
                                 eval || ckpt || global >= 0 || sampled || done % c->log_every == 0,
                                 err) != 0)
    return -1;
  if (!isfinite(so->loss))
    return smoe_fail(err, "loss became %f at step %lld; lower training.lr (now %g) or check the "
                     "data", so->loss, (long long)done, c->lr);
  if (write) stall += smoe_saver_write(sv, sync); /* logged: now it may complete */
  res->ckpt_stall_s += stall;
  res->log_stall_s += r->log_stall;
  res->steps = done;
  return 0;
}

/* With the gradient log, a fresh run checkpoints its initial state (step 0,
 * with a placement record of the initial placement and no loads yet): the
 * base the log's first records replay onto. */
static int log_start(run_t *r, smoe_err_t *err) {
  smoe_model_t *m = &r->x.m;
  int64_t *zeros = xcalloc((size_t)r->L * r->E, sizeof(int64_t));
  smoe_plog_t rec = {r->L, r->E, r->G, m->S, 0, zeros, m->placement.replicas,
                     m->placement.slot_expert, r->rank, zeros};
  int rc = smoe_ckpt_log(r->sv.ck, &rec, err);
  free(zeros);
  if (rc != 0) return -1;
  smoe_saver_stage(&r->sv, 0, 0, &r->x.policy);
  smoe_saver_write(&r->sv, !r->sv.async);
  r->res->checkpoints++;
  return 0;
}

/* The training loop, from r->start to the last step or a preemption. */
static int run_loop(run_t *r, smoe_err_t *err) {
  const smoe_config_t *c = r->c;
  smoe_model_t *m = &r->x.m;
  /* SMOE_FAIL_AT=RANK:STEP makes that rank fail at that step: the test hook
   * for "a failing rank ends the whole job" */
  int fail_rank = -1;
  long long fail_step = -1;
  if (getenv("SMOE_FAIL_AT")) sscanf(getenv("SMOE_FAIL_AT"), "%d:%lld", &fail_rank, &fail_step);
  if (r->sv.gl && r->start == 0 && log_start(r, err) != 0) return -1;
  for (int64_t step = r->start; step < c->steps && !r->stop; step++) {
    if (r->rank == fail_rank && step == fail_step)
      return smoe_fail(err, "injected failure at step %lld (SMOE_FAIL_AT)", (long long)step);
    double t0 = smoe_now();
    smoe_data_train_batch(&r->data, c->seed, step, r->rank * r->B, r->B, r->T, r->batch);
    smoe_step_ctl_t ctl = {.n = r->sv.gl ? 6 : 4, .read = read_control, .arg = &r->sv};
    smoe_step_out_t so;
    r->log_stall = 0;
    if (smoe_step(&r->x, r->batch, step, &ctl, &so, err) != 0) return -1;
    smoe_plog_t rec = {r->L,     r->E, r->G, m->S, step + 1, m->expert_counts, m->placement.replicas,
                       m->placement.slot_expert, r->rank, m->own_counts};
    smoe_err_t log_err;
    if (smoe_ckpt_log(r->sv.ck, &rec, &log_err) != 0) /* the manifest's synced write reports it */
      NOTE(r, "warning: placement log: %s", log_err.msg);
    if (r->sv.gl) {
      r->logged = -ctl.v[4];
      if (ctl.v[5] > 0) { /* a gradient-log write failed somewhere: every rank stops here */
        int failed;
        smoe_gradlog_durable(r->sv.gl, &failed, err);
        if (!failed) smoe_fail(err, "the gradient log failed on another rank (see its message)");
        return -1;
      }
    }
    int64_t global = -1;
    if (smoe_saver_agreed(&r->sv, (int)-ctl.v[3], &global, err) != 0) return -1;
    if (global >= 0) NOTE(r, "checkpoint of step %lld complete on every rank", (long long)global);
    double dt = smoe_now() - t0;
    r->res->train_s += dt;
    r->tokens += (int64_t)c->global_batch_size * r->T;
    if (step == r->start) /* the recovery time, when resumed */
      r->res->first_step_s = smoe_now() - r->t_start;
    if (run_after_step(r, step + 1, &so, ctl.v, global, dt, err) != 0) return -1;
    if (r->sv.gl) smoe_saver_log_post(&r->sv, step + 1, r->tokens, &r->x.policy); /* after its
                                                                        metrics line, as a checkpoint */
  }
  /* the last checkpoint in flight: finished and agreed by every rank; the
   * log written out */
  int64_t settled;
  double stall = 0;
  if (smoe_saver_settle(&r->sv, r->comm, &settled, &stall, err) != 0) return -1;
  if (r->sv.gl) {
    smoe_train_result_t *res = r->res;
    smoe_gradlog_drain(r->sv.gl);
    smoe_gradlog_counts(r->sv.gl, &res->log_records, &res->log_raw_bytes, &res->log_stored_bytes,
                        &res->log_write_s);
  }
  if (settled >= 0) NOTE(r, "checkpoint of step %lld complete on every rank", (long long)settled);
  return 0;
}

/* Expert (l, e) from the shards, on rank 0 (smoe_hf_save's source). */
static const real *gather_expert(void *arg, int l, int e) {
  run_t *r = arg;
  return smoe_shards_gather_one(&r->x.sh, r->comm, l, e);
}

/* After the loop (rc: its result): the run's figures, and unless it failed or
 * was preempted the final validation, weights, summary and "done" line. */
static int run_finish(run_t *r, int rc, smoe_err_t *err) {
  const smoe_config_t *c = r->c;
  smoe_train_result_t *res = r->res;
  smoe_model_t *m = &r->x.m;
  const int64_t start = r->start, trained = res->steps - start;
  res->mean_imbalance = trained > 0 ? r->imb_sum / (double)trained : 1.0;
  res->static_imbalance = trained > 0 ? r->static_imb_sum / (double)trained : 1.0;
  res->tokens_per_s =
      res->train_s > 0 ? (double)(trained * c->global_batch_size * r->T) / res->train_s : 0;
  res->model_flops_per_s = res->tokens_per_s * smoe_model_flops_per_token(m);
  res->preempted = r->stop && rc == 0;
  if (res->preempted) {
    int sig = smoe_loop_signal(r->sv.loop);
    NOTE(r, "preempted at step %lld (%s): checkpoint of step %lld written on every rank; resume "
         "with --resume auto", (long long)res->steps,
         sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM",
         (long long)smoe_ckpt_last_global(r->sv.ck));
  }
  /* after an error on this rank only, no more collectives: the caller aborts the job */
  if (rc != 0 || r->stop) return rc;
  if (start == c->steps) /* resumed after the last step: as if it had ended */
    res->final_val_loss = validate(m, &r->data, r->val_windows);
  res->wall_s = smoe_now() - r->t_start;
  run_memory(r); /* the arenas as the steps left them */
  /* the weights first, "done" only once they are on disk: rank 0 writes
   * them while every rank gathers the experts to it one at a time (on an
   * error rank 0 returns at once and the caller aborts the job) */
  if (r->rank == 0) {
    char path[SMOE_PATHLEN + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", r->out_dir);
    if (smoe_hf_save(m, path, sizeof(real) == 8 ? SMOE_F64 : SMOE_F32, gather_expert, r, err) !=
            0 ||
        write_summary(r->out_dir, c, res, r->threads, err) != 0)
      return -1;
  } else {
    for (int le = 0; le < r->L * r->E; le++) gather_expert(r, le / r->E, le % r->E);
  }
  if (start == c->steps) { /* resumed after the last step: nothing to train */
    NOTE(r, "done: the run was already complete at step %lld (resumed from its last checkpoint); "
         "val loss %.4f; final weights and summary written again", (long long)start,
         res->final_val_loss);
    return 0;
  }
  char replay[64] = "", first[48] = "";
  if (r->G > 1 && res->static_imbalance > 0 && strcmp(c->policy, "static") != 0)
    snprintf(replay, sizeof replay, " (static on the same loads: %.3f)", res->static_imbalance);
  if (res->first_val_loss >= 0)
    snprintf(first, sizeof first, " (at step 0: %.4f)", res->first_val_loss);
  NOTE(r, "done: %lld steps in %.1f s, final train loss %.4f, val loss %.4f%s, %.0f tokens/s, "
       "%.2f GFLOP/s; policy %s: mean imbalance %.3f%s, %lld tokens dropped",
       (long long)res->steps, res->wall_s, res->final_train_loss, res->final_val_loss, first,
       res->tokens_per_s, res->model_flops_per_s / 1e9, c->policy, res->mean_imbalance, replay,
       (long long)res->dropped_tokens);
  return 0;
}

/* The run, once its folder is ready (smoe_train). */
static int train_in(const smoe_config_t *c, const char *out_dir, const char *init_hf,
                    int64_t resume, int earlier, smoe_comm_t *comm, smoe_train_result_t *res,
                    smoe_err_t *err, double t_start) {
  run_t r = {.c = c, .out_dir = out_dir, .comm = comm, .res = res, .t_start = t_start};
  r.rank = smoe_comm_rank(comm), r.G = smoe_comm_size(comm);
  r.B = c->global_batch_size / r.G, r.T = c->seq_len, r.L = c->n_layers, r.E = c->num_experts;
  int removed = 0; /* checkpoints of the earlier run, with --overwrite */
  int64_t last_logged = 0;
  if (run_open(&r, init_hf, resume, &removed, &last_logged, err) != 0) return -1;
  run_memory(&r);
  run_announce(&r, init_hf, resume, earlier, removed, last_logged);
  res->first_val_loss = -1; /* on a resume: measured by the run that started it */
  if (r.start == 0) {
    res->first_val_loss = validate(&r.x.m, &r.data, r.val_windows);
    NOTE(&r, "step 0: val loss %.4f over %lld windows", res->first_val_loss,
         (long long)r.val_windows);
  }
  smoe_comm_reset_bytes(comm);
  r.tokens = r.start * (int64_t)c->global_batch_size * r.T;
  r.last_ckpt = res->steps = r.start; /* steps done, counted from the run's start */
  res->final_train_loss = NAN;        /* until a step of this process measures it */
  int rc = run_finish(&r, run_loop(&r, err), err);
  smoe_saver_close(&r.sv);
  run_free(&r);
  return rc;
}

int smoe_train(const smoe_config_t *c, const char *out_dir, const char *init_hf, int64_t resume,
               smoe_comm_t *comm, smoe_train_result_t *res, smoe_err_t *err) {
  const double t_start = smoe_now();
  const int G = smoe_comm_size(comm);
  memset(res, 0, sizeof *res);
  res->ranks = G;
  if (smoe_config_validate(c, err) != 0) return -1;
  if (c->global_batch_size % G != 0)
    return smoe_fail(err,
                     "training.global_batch_size = %d is not divisible by the %d ranks; each rank "
                     "takes an equal share of the batch",
                     c->global_batch_size, G);
  int lock = -1, earlier = 0;
  int rc = prepare_run_folder(c, out_dir, resume, comm, &lock, &earlier, res, err);
  if (rc == 0) rc = train_in(c, out_dir, init_hf, resume, earlier, comm, res, err, t_start);
  if (lock >= 0) close(lock);
  return rc;
}

