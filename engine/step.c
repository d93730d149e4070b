/* step.c: one training iteration (step.h). */
#include "step.h"

#include <math.h>
#include <string.h>

#include "hf.h"
#include "moe.h"
#include "optim.h"
#include "saver.h"

static void expert_init(const void *m, int l, int e, size_t lo, size_t n, real *out) {
  smoe_model_expert_init(m, l, e, lo, n, out);
}

static void shards_put(void *sh, int l, int e, size_t off, const real *x, size_t n) {
  smoe_shards_put(sh, l, e, off, x, n);
}

/* The shadows of layer l (model.c's forward) get their weights from the
 * shards, the step's current master weights. */
static void fetch_shadows(void *arg, int l) {
  smoe_step_ctx_t *x = arg;
  smoe_shards_shadow_weights(&x->sh, x->comm, &x->m.placement, x->m.experts, l, x->m.S - x->m.H);
}

int smoe_step_init(smoe_step_ctx_t *x, const smoe_config_t *c, int B, smoe_comm_t *comm,
                   const char *init_hf, smoe_err_t *err) {
  memset(x, 0, sizeof *x);
  x->c = c;
  x->comm = comm;
  smoe_model_t *m = &x->m;
  if (smoe_model_init_dist(m, c, B, comm, err) != 0) return -1;
  const int L = c->n_layers, E = c->num_experts, G = smoe_comm_size(comm);
  smoe_shards_init(&x->sh, m->ops, L, E, smoe_expert_numel(c->dim, c->expert_dim), m->S, comm,
                   strcmp(c->expert_optimizer, "replicated") == 0);
  /* the slots (model init) and the shards from the same initialiser, or
   * both from the file one tensor at a time: no rank builds all experts */
  smoe_shards_fill(&x->sh, expert_init, m);
  if (init_hf && smoe_hf_load(m, init_hf, shards_put, &x->sh, err) != 0) {
    smoe_shards_free(&x->sh);
    smoe_model_free(m);
    return -1;
  }
  const size_t nm = m->dense_sharded ? m->dense_chunk : m->n_dense; /* moments */
  x->dm = m->ops->alloc(nm * sizeof(real));
  x->dv = m->ops->alloc(nm * sizeof(real));
  x->dense_opt_bytes = 2 * nm * sizeof(real);
  if (m->dense_sharded) {
    x->dense_send = m->ops->alloc(m->dense_chunk * sizeof(real));
  }
  smoe_placement_init(&x->next, L, E, G, m->S);
  /* cannot fail: the model accepted the same policy name */
  smoe_policy_init(&x->policy, c->policy, L, E, G, m->S, c->seed, c->load_ema, err);
  smoe_policy_shadow_slots(&x->policy, m->H);
  m->fetch_shadows = fetch_shadows, m->fetch_arg = x; /* x must not move from here on */
  x->replicas = xmalloc(sizeof(int) * (size_t)L * E);
  return 0;
}

void smoe_step_free(smoe_step_ctx_t *x) {
  free(x->replicas);
  smoe_policy_free(&x->policy);
  smoe_placement_free(&x->next);
  const smoe_ops_t *o = x->m.ops ? x->m.ops : &smoe_ops_cpu;
  o->free(x->dm);
  o->free(x->dv);
  o->free(x->dense_send);
  smoe_shards_free(&x->sh);
  smoe_model_free(&x->m);
  memset(x, 0, sizeof *x);
}

const char *const smoe_mem_names[SMOE_MEM_KINDS] = {
    "dense",       "expert_slots", "expert_shards", "dense_optimizer",
    "activations", "exchange",     "scratch",       "staging"};

void smoe_step_memory(const smoe_step_ctx_t *x, smoe_mem_t *mem) {
  const smoe_model_t *m = &x->m;
  const smoe_shards_t *sh = &x->sh;
  const size_t rb = sizeof(real), dense = m->dense_chunk * (size_t)m->G; /* padded */
  const size_t LE = (size_t)m->dims.L * m->dims.E;
  memset(mem, 0, sizeof *mem);
  size_t *b = mem->bytes;
  b[SMOE_MEM_DENSE] = 2 * dense * rb + LE * rb + (m->dense_grad_shard ? m->dense_chunk * rb : 0);
  b[SMOE_MEM_EXPERT_SLOTS] = 2 * m->n_experts * rb;
  b[SMOE_MEM_EXPERT_SHARDS] = sh->bytes - sh->exchange_bytes;
  b[SMOE_MEM_DENSE_OPTIMIZER] = x->dense_opt_bytes;
  b[SMOE_MEM_ACTIVATIONS] = m->bytes_acts;
  b[SMOE_MEM_EXCHANGE] = m->bytes_exchange + sh->exchange_bytes + (x->dense_send ? m->dense_chunk * rb : 0);
  b[SMOE_MEM_SCRATCH] = m->arena.cap + x->policy.scratch.cap;
}

int smoe_step_plan_memory(const smoe_config_t *c, int G, int rank, smoe_mem_t *mem,
                          smoe_err_t *err) {
  memset(mem, 0, sizeof *mem);
  if (c->global_batch_size % G != 0)
    return smoe_fail(err, "training.global_batch_size = %d is not divisible by %d ranks",
                     c->global_batch_size, G);
  smoe_model_plan_t mp;
  if (smoe_model_plan(c, G, c->global_batch_size / G, &mp, err) != 0) return -1;
  const int replicated = strcmp(c->expert_optimizer, "replicated") == 0,
            ds = strcmp(c->dense_optimizer, "sharded") == 0;
  size_t n, state, exchange;
  smoe_shards_plan(c->n_layers, c->num_experts, smoe_expert_numel(c->dim, c->expert_dim), mp.S,
                   G, rank, replicated, &n, &state, &exchange);
  const size_t rb = sizeof(real), lo = (size_t)rank * mp.dense_chunk;
  const size_t len = lo >= mp.n_dense ? 0
                     : mp.n_dense - lo < mp.dense_chunk ? mp.n_dense - lo : mp.dense_chunk;
  size_t *b = mem->bytes;
  b[SMOE_MEM_DENSE] = mp.dense;
  b[SMOE_MEM_EXPERT_SLOTS] = mp.slots;
  b[SMOE_MEM_EXPERT_SHARDS] = state;
  b[SMOE_MEM_DENSE_OPTIMIZER] = 2 * (ds ? mp.dense_chunk : mp.n_dense) * rb;
  b[SMOE_MEM_ACTIVATIONS] = mp.acts;
  b[SMOE_MEM_EXCHANGE] = mp.exchange + exchange + (ds ? mp.dense_chunk * rb : 0);
  b[SMOE_MEM_STAGING] = smoe_saver_staging_plan(c, n, len);
  return 0;
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

int smoe_step(smoe_step_ctx_t *x, const int32_t *batch, int64_t step, smoe_step_ctl_t *ctl,
              smoe_step_out_t *out, smoe_err_t *err) {
  const smoe_config_t *c = x->c;
  smoe_model_t *m = &x->m;
  smoe_shards_t *sh = &x->sh;
  smoe_comm_t *comm = x->comm;
  const int L = m->dims.L, E = m->dims.E;
  smoe_model_forward(m, batch, m->B);
  out->shadows = m->shadows;
  out->loss = m->loss, out->ce = m->ce, out->aux = m->aux, out->z = m->z;
  smoe_model_zero_grad(m);
  smoe_model_backward(m);
  /* expert gradients: every replica's slot gradient, slice g to rank g */
  smoe_shards_grads(sh, comm, &m->placement, m->experts_grad);
  /* the global norm over this rank's dense slice (sharded; replicated: all
   * of them, equal on every rank) and its expert slices (replicated: all) */
  const int ds = m->dense_sharded;
  real *dg = ds ? m->dense_grad_shard : m->dense_grad_mem;
  const size_t nd = ds ? m->dense_len : m->n_dense;
  const smoe_ops_t *ops = m->ops;
  double dense_sq = ops->sumsq(dg, nd), expert_sq = ops->sumsq(sh->grad, sh->n);
  if (ds || !sh->replicated) {
    double v[2] = {ds ? dense_sq : 0, sh->replicated ? 0 : expert_sq};
    smoe_comm_allreduce_f64(comm, v, 2, SMOE_PHASE_OTHER);
    if (ds) dense_sq = v[0];
    if (!sh->replicated) expert_sq = v[1];
  }
  out->grad_norm = sqrt(dense_sq + expert_sq);
  double clip = smoe_clip_factor(out->grad_norm, c->grad_clip);
  if (clip < 1.0) {
    ops->scale(dg, nd, (real)clip);
    ops->scale(sh->grad, sh->n, (real)clip);
  }
  smoe_adamw_t o = {smoe_lr_at(step, smoe_config_warmup(c), c->steps, c->lr, c->min_lr), c->beta1,
                    c->beta2, c->adam_eps, c->weight_decay};
  out->lr = o.lr;
  if (x->on_grads) {
    const real *grads[2] = {sh->grad, dg + (ds ? 0 : m->dense_lo)};
    x->on_grads(x->grads_arg, step, &o, clip, out->grad_norm, grads);
  }
  ops->stage_fence(); /* a checkpoint's staging copies first (backend.h) */
  ops->adamw(m->dense_mem + (ds ? m->dense_lo : 0), dg, x->dm, x->dv, nd, &o, step + 1);
  if (ds) { /* every rank's updated slice to every rank, while the experts update and plan */
    ops->copy(x->dense_send, m->dense_mem + m->dense_lo, m->dense_len);
    smoe_comm_allgather_start(comm, x->dense_send, m->dense_mem, sizeof(real) * m->dense_chunk,
                              SMOE_PHASE_DENSE_WEIGHTS);
  }
  ops->adamw(sh->master, sh->grad, sh->exp_avg, sh->exp_avg_sq, sh->n, &o, step + 1);
  if (c->bias_update_rate > 0) update_expert_bias(m, c->bias_update_rate);
  /* the policy's placement for the next step, then the updated weights go
   * straight to its slots: the same bytes whether or not it changed */
  memcpy(x->replicas, m->placement.replicas, sizeof(int) * (size_t)L * E);
  double t = smoe_now();
  smoe_policy_next(&x->policy, m->expert_counts, m->split_mode ? m->src_counts : NULL, step + 1,
                   &m->placement, &x->next);
  out->plan_s = smoe_now() - t;
  /* every rank must hold the same plan and split (fingerprints), or the
   * exchange below would pair mismatched messages; the caller's control
   * values ride along */
  uint64_t h = m->split_hash;
  for (size_t i = 0; i < (size_t)L * m->G * m->S; i++)
    h = smoe_mix64(h ^ (uint64_t)x->next.slot_expert[i]);
  int64_t v[2 + SMOE_STEP_MAX_CTL] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)};
  int n = ctl ? ctl->n : 0;
  if (ctl && ctl->read) ctl->read(ctl->arg, ctl->v);
  if (n) memcpy(v + 2, ctl->v, sizeof(int64_t) * (size_t)n);
  smoe_comm_allreduce_max_i64(comm, v, 2 + n, SMOE_PHASE_OTHER);
  smoe_comm_wait_all(comm); /* the dense weights are whole again */
  if (n) memcpy(ctl->v, v + 2, sizeof(int64_t) * (size_t)n);
  if (v[0] != -v[1])
    return smoe_fail(err, "ranks disagree on the placement or split of step %lld (internal error)",
                     (long long)step + 1);
  smoe_shards_weights(sh, comm, &x->next, m->experts);
  smoe_model_set_placement(m, &x->next);
  return 0;
}
