/* train.c: the single-process training loop: data -> forward -> backward ->
 * clip -> AdamW -> balancing bias -> metrics, with periodic validation. */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval.h"
#include "hf.h"
#include "metrics.h"
#include "moe.h"
#include "optim.h"
#include "policy.h"
#include "shards.h"

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

/* DeepSeek-V3's aux-loss-free balancing: after each step, raise the bias of
 * experts below the mean load and lower it above, by a fixed rate (global
 * counts, so every rank makes the same change). */
static void update_expert_bias(smoe_model_t *m, double rate) {
  const int L = m->dims.L, E = m->dims.E;
  for (int l = 0; l < L; l++) {
    const int64_t *c = m->expert_counts + (size_t)l * E;
    double mean = 0;
    for (int e = 0; e < E; e++) mean += (double)c[e];
    mean /= E;
    for (int e = 0; e < E; e++) {
      double diff = mean - (double)c[e];
      m->expert_bias[(size_t)l * E + e] += (real)(rate * ((diff > 0) - (diff < 0)));
    }
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
  cJSON_AddNumberToObject(o, "threads", threads);
  cJSON_AddStringToObject(o, "precision", SMOE_REAL_NAME);
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

/* What rank 0 prints (and, with metrics.all_ranks, every rank). */
#define NOTE(...)                                                         \
  do {                                                                    \
    if (mt) smoe_metrics_note(mt, __VA_ARGS__);                           \
    else if (c->all_ranks) {                                              \
      fprintf(stderr, "[rank %d] ", rank);                                \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

int smoe_train(const smoe_config_t *c, const char *out_dir, const char *init_hf,
               smoe_comm_t *comm, smoe_train_result_t *res, smoe_err_t *err) {
  const double t_start = smoe_now();
  const int rank = smoe_comm_rank(comm), G = smoe_comm_size(comm);
  memset(res, 0, sizeof *res);
  res->ranks = G;
  if (smoe_config_validate(c, err) != 0) return -1;
  if (c->global_batch_size % G != 0)
    return smoe_fail(err,
                     "training.global_batch_size = %d is not divisible by the %d ranks; each rank "
                     "takes an equal share of the batch",
                     c->global_batch_size, G);
  smoe_metrics_t *mt = NULL; /* rank 0 writes the run folder */
  if (rank == 0) {
    if (make_dirs(out_dir, err) != 0) return -1;
    char path[SMOE_PATHLEN + 32];
    snprintf(path, sizeof path, "%s/config.ini", out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
    int bad = smoe_config_write(c, f) != 0;
    if (fclose(f) != 0 || bad) return smoe_fail(err, "cannot write %s: %s", path, strerror(errno));
    if (!(mt = smoe_metrics_open(out_dir, c->progress, c->steps, err))) return -1;
  }
  /* threads: the node's cores shared by the ranks on it */
  int threads = c->threads;
  if (threads == 0) {
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN), local = smoe_comm_node_size(comm);
    threads = cores / local > 0 ? cores / local : 1;
  }
  threads = smoe_set_threads(threads);

  smoe_data_t data;
  if (smoe_data_load(&data, c->data_path, c->val_fraction, c->seq_len, err) != 0) {
    smoe_metrics_close(mt);
    return -1;
  }
  int rc = 0;
  if (data.vocab_size > c->vocab_size)
    rc = smoe_fail(err,
                   "[model] vocab_size = %d is smaller than the data's vocabulary (%d tokens); "
                   "set model.vocab_size >= %d",
                   c->vocab_size, data.vocab_size, data.vocab_size);
  const int B = c->global_batch_size / G, T = c->seq_len, L = c->n_layers, E = c->num_experts;
  smoe_model_t m;
  int have_model = rc == 0 && smoe_model_init_dist(&m, c, B, comm, err) == 0;
  if (rc == 0 && !have_model) rc = -1;
  if (rc == 0 && init_hf) {
    rc = smoe_hf_load(&m, init_hf, err); /* every expert, into experts_full */
    if (rc == 0) smoe_model_scatter_experts(&m);
  }
  smoe_shards_t sh; /* the experts' optimizer state: this rank's slices */
  if (rc == 0) {
    smoe_shards_init(&sh, L, E, smoe_expert_numel(c->dim, c->expert_dim), m.S, comm,
                     strcmp(c->expert_optimizer, "replicated") == 0);
    smoe_shards_load(&sh, m.experts_full);
    res->optimizer_bytes = smoe_shards_state_bytes(&sh) + 2 * m.n_dense * sizeof(real);
    res->expert_optimizer_bytes = smoe_shards_state_bytes(&sh);
  }
  if (rc != 0) {
    if (have_model) smoe_model_free(&m);
    smoe_metrics_close(mt);
    smoe_data_free(&data);
    return -1;
  }
  real *dm = xcalloc(m.n_dense, sizeof(real)), *dv = xcalloc(m.n_dense, sizeof(real));
  smoe_placement_t next;
  smoe_placement_init(&next, L, E, G, m.S);
  smoe_policy_t policy; /* cannot fail: the model accepted the same policy name */
  smoe_policy_init(&policy, c->policy, L, E, G, m.S, c->seed, c->load_ema, err);
  int32_t *batch = xmalloc(sizeof(int32_t) * (size_t)B * (T + 1));
  int64_t *rank_tokens = xmalloc(sizeof(int64_t) * (size_t)G * L);
  double *imb = xmalloc(sizeof(double) * (size_t)L);
  int *replicas = xmalloc(sizeof(int) * (size_t)L * E); /* this step's, for the metrics */
  int64_t val_windows = smoe_data_val_windows(&data, T);
  if (val_windows > c->eval_windows) val_windows = c->eval_windows;
  const size_t P = (size_t)3 * c->dim * c->expert_dim, n_expert_params = (size_t)L * E * P;
  NOTE("swiftmoe: %d layers, dim %d, %d experts (top %d), %.2fM parameters (%.2fM active); "
       "%zu train / %zu val tokens from %d files; %d rank%s x %d thread%s, %s, policy %s",
       c->n_layers, c->dim, c->num_experts, c->top_k,
       (double)(m.n_dense + n_expert_params) / 1e6,
       (double)(m.n_dense + n_expert_params / E * c->top_k) / 1e6, data.n_train, data.n_val,
       data.n_files, G, G > 1 ? "s" : "", threads, threads > 1 ? "s" : "", SMOE_REAL_NAME,
       c->policy);
  NOTE("run folder: %s%s%s", out_dir, init_hf ? "; weights from " : "", init_hf ? init_hf : "");

  const double flops_tok = smoe_model_flops_per_token(&m);
  res->first_val_loss = validate(&m, &data, val_windows);
  NOTE("step 0: val loss %.4f over %lld windows", res->first_val_loss, (long long)val_windows);
  smoe_comm_reset_bytes(comm);
  int64_t tokens = 0;
  double imb_sum = 0, static_imb_sum = 0;
  /* SMOE_FAIL_AT=RANK:STEP makes that rank fail at that step: the test hook
   * for "a failing rank ends the whole job" */
  int fail_rank = -1;
  long long fail_step = -1;
  if (getenv("SMOE_FAIL_AT")) sscanf(getenv("SMOE_FAIL_AT"), "%d:%lld", &fail_rank, &fail_step);
  for (int64_t step = 0; step < c->steps; step++) {
    if (rank == fail_rank && step == fail_step) {
      rc = smoe_fail(err, "injected failure at step %lld (SMOE_FAIL_AT)", (long long)step);
      break;
    }
    double t0 = smoe_now();
    smoe_data_train_batch(&data, c->seed, step, rank * B, B, T, batch);
    smoe_model_forward(&m, batch, B);
    smoe_model_zero_grad(&m);
    smoe_model_backward(&m);
    /* expert gradients: every replica's slot gradient, slice g to rank g */
    smoe_shards_grads(&sh, comm, &m.placement, m.experts_grad);
    /* the global norm: dense gradients are equal on every rank after their
     * all-reduce; each expert slice lives on one rank (on all: replicated) */
    double expert_sq = smoe_sumsq(sh.grad, sh.n);
    if (!sh.replicated) smoe_comm_allreduce_f64(comm, &expert_sq, 1, SMOE_PHASE_OTHER);
    double norm = sqrt(smoe_sumsq(m.dense_grad_mem, m.n_dense) + expert_sq);
    double clip = smoe_clip_factor(norm, c->grad_clip);
    if (clip < 1.0) {
      smoe_scale(m.dense_grad_mem, m.n_dense, (real)clip);
      smoe_scale(sh.grad, sh.n, (real)clip);
    }
    smoe_adamw_t o = {smoe_lr_at(step, c->warmup_steps, c->steps, c->lr, c->min_lr), c->beta1,
                      c->beta2, c->adam_eps, c->weight_decay};
    smoe_adamw_step(m.dense_mem, m.dense_grad_mem, dm, dv, m.n_dense, &o, step + 1);
    smoe_adamw_step(sh.master, sh.grad, sh.exp_avg, sh.exp_avg_sq, sh.n, &o, step + 1);
    if (c->bias_update_rate > 0) update_expert_bias(&m, c->bias_update_rate);
    /* the policy's placement for the next step, then the updated weights go
     * straight to its slots: the same bytes whether or not it changed */
    memcpy(replicas, m.placement.replicas, sizeof(int) * (size_t)L * E); /* for the metrics */
    double t_plan = smoe_now();
    smoe_policy_next(&policy, m.expert_counts, m.split_mode ? m.src_counts : NULL, step + 1,
                     &m.placement, &next);
    t_plan = smoe_now() - t_plan;
    /* every rank must hold the same plan and split: compare fingerprints */
    uint64_t h = m.split_hash;
    for (size_t i = 0; i < (size_t)L * G * m.S; i++) h = smoe_mix64(h ^ (uint64_t)next.slot_expert[i]);
    int64_t fp[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)};
    smoe_comm_allreduce_max_i64(comm, fp, 2, SMOE_PHASE_OTHER);
    if (fp[0] != -fp[1]) {
      rc = smoe_fail(err, "ranks disagree on the placement or split of step %lld (internal error)",
                     (long long)step + 1);
      break;
    }
    smoe_shards_weights(&sh, comm, &next, m.experts);
    smoe_model_set_placement(&m, &next);
    double dt = smoe_now() - t0;
    res->train_s += dt;
    tokens += (int64_t)c->global_batch_size * T;

    /* metrics: bytes of this step summed over ranks, then the load */
    int64_t bytes[SMOE_PHASE_COUNT];
    smoe_comm_bytes(comm, bytes);
    smoe_comm_allreduce_i64(comm, bytes, SMOE_PHASE_COUNT, SMOE_PHASE_OTHER);
    double mean_imb = gather_load(&m, rank_tokens, imb);
    imb_sum += mean_imb;
    static_imb_sum += static_imbalance(&m);
    int64_t dropped = 0;
    for (int l = 0; l < L; l++) dropped += m.dropped[l];
    res->dropped_tokens += dropped;
    smoe_step_record_t r = {.step = step + 1, .loss = m.loss, .ce = m.ce, .aux_loss = m.aux,
                            .z_loss = m.z, .lr = o.lr, .grad_norm = norm, .val_loss = -1,
                            .tokens = tokens, .step_tokens = (int64_t)c->global_batch_size * T,
                            .step_time_s = dt, .expert_counts = m.expert_counts, .L = L, .E = E,
                            .G = G, .rank_tokens = rank_tokens, .imbalance = mean_imb,
                            .layer_imbalance = imb, .dropped = dropped, .bytes = bytes,
                            .replicas = replicas, .plan_time_s = t_plan,
                            .split_time_s = m.split_time};
    res->final_train_loss = m.ce;
    int last = step + 1 == c->steps;
    int eval = last || (c->eval_every > 0 && (step + 1) % c->eval_every == 0);
    int64_t *counts = NULL;
    if (eval) { /* the counts above belong to the training batch: keep them */
      counts = xmalloc(sizeof(int64_t) * (size_t)L * E);
      memcpy(counts, m.expert_counts, sizeof(int64_t) * (size_t)L * E);
      r.expert_counts = counts;
      r.val_loss = res->final_val_loss = validate(&m, &data, val_windows);
    }
    if (mt) rc = smoe_metrics_step(mt, &r, eval || (step + 1) % c->log_every == 0, err);
    free(counts);
    smoe_comm_reset_bytes(comm);
    if (rc != 0) break;
    if (!isfinite(m.loss)) {
      rc = smoe_fail(err, "loss became %f at step %lld; lower training.lr (now %g) or check the data",
                     m.loss, (long long)step + 1, c->lr);
      break;
    }
    res->steps = step + 1;
  }
  res->mean_imbalance = res->steps ? imb_sum / (double)res->steps : 1.0;
  res->static_imbalance = res->steps ? static_imb_sum / (double)res->steps : 1.0;
  res->tokens_per_s = res->train_s > 0 ? (double)tokens / res->train_s : 0;
  res->model_flops_per_s = res->tokens_per_s * flops_tok;
  /* after an error on this rank only, no more collectives: the caller aborts the job */
  if (rc == 0) smoe_shards_gather(&sh, comm, m.experts_full);
  res->wall_s = smoe_now() - t_start;
  if (rc == 0 && rank == 0) { /* the weights first: "done" only once they are on disk */
    char path[SMOE_PATHLEN + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    rc = smoe_hf_save(&m, path, sizeof(real) == 8 ? SMOE_F64 : SMOE_F32, err);
    if (rc == 0) rc = write_summary(out_dir, c, res, threads, err);
  }
  if (rc == 0) {
    char replay[64] = "";
    if (G > 1 && res->static_imbalance > 0 && strcmp(c->policy, "static") != 0)
      snprintf(replay, sizeof replay, " (static on the same loads: %.3f)", res->static_imbalance);
    NOTE("done: %lld steps in %.1f s, final train loss %.4f, val loss %.4f (at step 0: %.4f), "
         "%.0f tokens/s, %.2f GFLOP/s; policy %s: mean imbalance %.3f%s, %lld tokens dropped",
         (long long)res->steps, res->wall_s, res->final_train_loss, res->final_val_loss,
         res->first_val_loss, res->tokens_per_s, res->model_flops_per_s / 1e9, c->policy,
         res->mean_imbalance, replay, (long long)res->dropped_tokens);
  }
  smoe_metrics_close(mt);
  free(batch);
  free(rank_tokens), free(imb), free(replicas);
  free(dm), free(dv);
  smoe_placement_free(&next);
  smoe_policy_free(&policy);
  smoe_shards_free(&sh);
  smoe_model_free(&m);
  smoe_data_free(&data);
  return rc;
}
