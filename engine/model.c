/* model.c: layout, init, forward and backward of the Mixtral transformer. */
#include "model.h"

#include <math.h>
#include <string.h>

#include "ckpt.h"
#include "data.h"
#include "moe.h"
#include "ops.h"
#include "policy.h"
#include "split.h"

/* ---------------------------------------------------------------- layout */

typedef struct {
  void **ptr;
  size_t n; /* elements */
} region_t;

/* One allocation from the backend for a list of regions of elem-sized
 * elements (zeroed). */
static void *carve(const smoe_ops_t *o, region_t *r, int count, size_t elem, size_t *total_out) {
  size_t total = 0;
  for (int i = 0; i < count; i++) total += r[i].n;
  char *mem = o->alloc(smoe_mul(total, elem));
  size_t off = 0;
  for (int i = 0; i < count; i++) {
    *r[i].ptr = mem + off * elem;
    off += r[i].n;
  }
  if (total_out) *total_out = total;
  return mem;
}

/* The dense parameters' regions in layout order; the last two, the untied
 * lm_head and the padding, point at *lm_head and *pad (padding 0 here). */
static int dense_regions(smoe_dense_t *p, const smoe_dims_t *d, real **lm_head, real **pad,
                         region_t *r) {
  size_t L = d->L, D = d->D, qd = (size_t)d->H * d->hd, kd = (size_t)d->Hkv * d->hd;
  region_t dr[] = {
      {(void **)&p->embed, (size_t)d->V * D}, {(void **)&p->ln1, L * D},
      {(void **)&p->wq, L * qd * D},          {(void **)&p->wk, L * kd * D},
      {(void **)&p->wv, L * kd * D},          {(void **)&p->wo, L * D * qd},
      {(void **)&p->ln2, L * D},              {(void **)&p->gate, L * d->E * D},
      {(void **)&p->lnf, D},                  {(void **)lm_head, d->tied ? 0 : (size_t)d->V * D},
      {(void **)pad, 0},
  };
  memcpy(r, dr, sizeof dr);
  return (int)(sizeof dr / sizeof dr[0]);
}

/* Elements of the dense parameters (without padding). */
static size_t dense_numel(const smoe_dims_t *d) {
  smoe_dense_t p;
  real *lm_head, *pad;
  region_t r[16];
  int count = dense_regions(&p, d, &lm_head, &pad, r);
  size_t total = 0;
  for (int i = 0; i < count; i++) total += r[i].n;
  return total;
}

/* The dense parameters' table over one allocation of *n elements, padded
 * with zeros to a multiple of G (the sharded optimizer's slices). */
static real *dense_layout(const smoe_ops_t *o, smoe_dense_t *p, const smoe_dims_t *d, int G,
                          size_t *n) {
  real *lm_head = NULL, *pad = NULL;
  region_t r[16];
  const int count = dense_regions(p, d, &lm_head, &pad, r);
  size_t total = dense_numel(d);
  r[count - 1].n = (total + (size_t)G - 1) / (size_t)G * (size_t)G - total;
  real *mem = carve(o, r, count, sizeof(real), NULL);
  if (n) *n = total;
  p->lm_head = d->tied ? p->embed : lm_head;
  return mem;
}

static void add_tensor(smoe_model_t *m, int *cap, const char *name, int rows, int cols, int buffer,
                       size_t offset, int layer, int expert) {
  if (m->n_tensors == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    smoe_tensor_t *t = realloc(m->tensors, sizeof(smoe_tensor_t) * (size_t)*cap);
    if (!t) {
      fprintf(stderr, "swiftmoe: out of memory for the tensor table\n");
      exit(1);
    }
    m->tensors = t;
  }
  smoe_tensor_t *t = &m->tensors[m->n_tensors++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = cols ? 2 : 1;
  t->shape[0] = rows;
  t->shape[1] = cols;
  t->numel = (size_t)rows * (cols ? cols : 1);
  t->buffer = buffer;
  t->offset = offset;
  t->layer = layer;
  t->expert = expert;
}

static void build_tensor_table(smoe_model_t *m) {
  const smoe_dims_t *d = &m->dims;
  const smoe_dense_t *p = &m->p;
  const real *db = m->dense_mem;
  int cap = 0, D = d->D, qd = d->H * d->hd, kd = d->Hkv * d->hd, F = d->F;
  size_t P = smoe_expert_numel(D, F);
  char name[96];
  add_tensor(m, &cap, "model.embed_tokens.weight", d->V, D, SMOE_BUF_DENSE, 0, -1, -1);
  for (int l = 0; l < d->L; l++) {
#define DENSE(suffix, ptr, rows, cols)                                      \
  snprintf(name, sizeof name, "model.layers.%d." suffix, l);                \
  add_tensor(m, &cap, name, rows, cols, SMOE_BUF_DENSE, (size_t)((ptr) - db), l, -1);
    DENSE("input_layernorm.weight", p->ln1 + (size_t)l * D, D, 0);
    DENSE("self_attn.q_proj.weight", p->wq + (size_t)l * qd * D, qd, D);
    DENSE("self_attn.k_proj.weight", p->wk + (size_t)l * kd * D, kd, D);
    DENSE("self_attn.v_proj.weight", p->wv + (size_t)l * kd * D, kd, D);
    DENSE("self_attn.o_proj.weight", p->wo + (size_t)l * D * qd, D, qd);
    DENSE("post_attention_layernorm.weight", p->ln2 + (size_t)l * D, D, 0);
    DENSE("block_sparse_moe.gate.weight", p->gate + (size_t)l * d->E * D, d->E, D);
#undef DENSE
    for (int e = 0; e < d->E; e++) {
      const char *wn[3] = {"w1", "w3", "w2"};
      m->expert_tensor[(size_t)l * d->E + e] = m->n_tensors;
      for (int j = 0; j < 3; j++) { /* w1 | w3 | w2 of the expert's vector (moe.h) */
        snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e,
                 wn[j]);
        add_tensor(m, &cap, name, j == 2 ? D : F, j == 2 ? F : D, SMOE_BUF_EXPERT,
                   ((size_t)l * d->E + e) * P + (size_t)j * F * D, l, e);
      }
    }
  }
  add_tensor(m, &cap, "model.norm.weight", D, 0, SMOE_BUF_DENSE, (size_t)(p->lnf - db), -1, -1);
  if (!d->tied)
    add_tensor(m, &cap, "lm_head.weight", d->V, D, SMOE_BUF_DENSE, (size_t)(p->lm_head - db), -1,
               -1);
}

/* Slot s of this rank in layer l: its expert, or -1. */
static int slot_expert(const smoe_model_t *m, int l, int s) {
  return m->placement.slot_expert[((size_t)l * m->G + m->rank) * m->S + s];
}

real *smoe_model_expert(const smoe_model_t *m, int l, int e) {
  const size_t P = smoe_expert_numel(m->dims.D, m->dims.F);
  for (int s = 0; s < m->S; s++)
    if (slot_expert(m, l, s) == e) return m->experts + ((size_t)l * m->S + s) * P;
  return NULL;
}

void smoe_model_put_expert(smoe_model_t *m, int l, int e, size_t off, const real *x, size_t n) {
  const size_t P = smoe_expert_numel(m->dims.D, m->dims.F);
  for (int s = 0; s < m->S; s++)
    if (slot_expert(m, l, s) == e)
      m->ops->to_device(m->experts + ((size_t)l * m->S + s) * P + off, x, sizeof(real) * n);
}

real *smoe_tensor_data(const smoe_model_t *m, const smoe_tensor_t *t) {
  if (t->buffer == SMOE_BUF_DENSE) return m->dense_mem + t->offset;
  real *w = smoe_model_expert(m, t->layer, t->expert);
  return w ? w + t->offset % smoe_expert_numel(m->dims.D, m->dims.F) : NULL;
}

real *smoe_tensor_grad(const smoe_model_t *m, const smoe_tensor_t *t) {
  if (t->buffer == SMOE_BUF_DENSE) return m->dense_grad_mem + t->offset;
  return m->one_slot_each ? m->experts_grad + t->offset : NULL;
}

const smoe_tensor_t *smoe_model_find(const smoe_model_t *m, const char *name) {
  for (int i = 0; i < m->n_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

/* Standard normal from a counter-based generator: deterministic per (seed,
 * tensor, element), independent of threads and of the tensor order. */
static double normal_at(uint64_t seed, uint64_t i) {
  uint64_t a = smoe_mix64(seed ^ smoe_mix64(2 * i)), b = smoe_mix64(seed ^ smoe_mix64(2 * i + 1));
  double u1 = ((double)(a >> 11) + 0.5) * 0x1.0p-53, u2 = (double)(b >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* The seed of tensor i of the table: each tensor's values depend only on it. */
static uint64_t tensor_seed(uint64_t seed, int i) {
  return smoe_mix64(seed ^ smoe_mix64(0x5eed0000ull + (uint64_t)i));
}

void smoe_model_expert_init(const smoe_model_t *m, int l, int e, size_t lo, size_t n, real *out) {
  const size_t FD = (size_t)m->dims.F * m->dims.D;
  /* each value from its own counter: any thread order gives the same bits */
#pragma omp parallel for schedule(static)
  for (size_t k = lo; k < lo + n; k++) { /* w1 | w3 | w2, each a tensor of F * D values */
    uint64_t ts = tensor_seed(m->init_seed, m->expert_tensor[(size_t)l * m->dims.E + e] +
                                                (int)(k / FD));
    out[k - lo] = (real)(m->init_std * normal_at(ts, k % FD));
  }
}

/* Dense parameters from the seed (norm weights 1), and the experts in this
 * rank's slots: each value a function of (seed, tensor, element) only,
 * computed on the host and sent to the backend a tensor at a time. */
static void init_params(smoe_model_t *m) {
  const size_t P = smoe_expert_numel(m->dims.D, m->dims.F);
  size_t most = P;
  for (int i = 0; i < m->n_tensors; i++)
    most = m->tensors[i].numel > most ? m->tensors[i].numel : most;
  real *x = xmalloc(sizeof(real) * most);
  for (int i = 0; i < m->n_tensors; i++) {
    const smoe_tensor_t *t = &m->tensors[i];
    if (t->buffer != SMOE_BUF_DENSE) continue;
    uint64_t ts = tensor_seed(m->init_seed, i);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < t->numel; j++)
      x[j] = t->ndim == 1 ? 1 : (real)(m->init_std * normal_at(ts, j));
    m->ops->to_device(smoe_tensor_data(m, t), x, sizeof(real) * t->numel);
  }
  for (int l = 0; l < m->dims.L; l++) /* each expert once, into all its slots */
    for (int e = 0; e < m->dims.E; e++)
      if (smoe_model_expert(m, l, e)) {
        smoe_model_expert_init(m, l, e, 0, P, x);
        smoe_model_put_expert(m, l, e, 0, x, P);
      }
  free(x);
}

int smoe_model_slots(const smoe_config_t *c, int E, int G, int *H, smoe_err_t *err) {
  const int S = smoe_slots_per_rank(c->policy, c->slots_per_rank, E, G, err);
  *H = S >= 0 && G > 1 && strcmp(c->policy, "swiftmoe") == 0 ? c->shadow_slots : 0;
  return S < 0 ? -1 : S + *H;
}

static void dims_from_config(smoe_dims_t *d, const smoe_config_t *c) {
  d->V = c->vocab_size, d->D = c->dim, d->L = c->n_layers, d->H = c->n_heads;
  d->Hkv = c->n_kv_heads, d->hd = c->dim / c->n_heads, d->T = c->seq_len;
  d->E = c->num_experts, d->K = c->top_k, d->F = c->expert_dim;
  d->eps = c->rms_norm_eps, d->theta = c->rope_theta, d->tied = c->tie_word_embeddings;
}

static size_t rows_bound(const smoe_model_t *m) {
  return (size_t)smoe_drops_rows_bound(&m->drops, m->G, m->S, m->dims.E, m->dims.K,
                                       (int64_t)m->B * m->dims.T);
}

/* The buffers init allocates for a batch of m->B sequences, as regions of
 * one allocation each (the planner sums the same lists, smoe_model_plan):
 * activations saved for backward (real, then int32), the keep flags, and
 * the backward scratch with the exchange buffers. R = rows_max. */
static int act_regions(smoe_model_t *m, region_t *r) {
  const smoe_dims_t *d = &m->dims;
  const size_t L = d->L, B = m->B, N = smoe_mul(B, (size_t)d->T), D = d->D, E = d->E,
               NK = N * d->K, F = d->F, qd = (size_t)d->H * d->hd, kd = (size_t)d->Hkv * d->hd,
               R = m->rows_max;
  smoe_acts_t *a = &m->a;
  region_t ar[] = {
      {(void **)&a->resid, (L + 1) * N * D},
      {(void **)&a->ln1, L * N * D},
      {(void **)&a->ln1_rstd, L * N},
      {(void **)&a->q, L * N * qd},
      {(void **)&a->k, L * N * kd},
      {(void **)&a->v, L * N * kd},
      {(void **)&a->att, smoe_mul(L * B * d->H, smoe_mul((size_t)d->T, (size_t)d->T))},
      {(void **)&a->atty, L * N * qd},
      {(void **)&a->mid, L * N * D},
      {(void **)&a->ln2, L * N * D},
      {(void **)&a->ln2_rstd, L * N},
      {(void **)&a->probs, L * N * E},
      {(void **)&a->lse, L * N},
      {(void **)&a->gw, L * NK},
      {(void **)&a->xe, L * R * D},
      {(void **)&a->h13, L * R * 2 * F},
      {(void **)&a->act, L * R * F},
      {(void **)&a->ye_local, L * NK * D},
      {(void **)&a->lnf, N * D},
      {(void **)&a->lnf_rstd, N},
      {(void **)&a->logits, N * d->V},
      /* what the ops read beside them: the RoPE tables, the expert bias
       * and the aux loss gradient (sent from the host) */
      {(void **)&m->rope_cos, (size_t)d->T * (d->hd / 2)},
      {(void **)&m->rope_sin, (size_t)d->T * (d->hd / 2)},
      {(void **)&m->bias_dev, L * E},
      {(void **)&m->aux_dp_dev, E},
  };
  memcpy(r, ar, sizeof ar);
  return (int)(sizeof ar / sizeof ar[0]);
}

static int int_regions(smoe_model_t *m, region_t *r) {
  /* int32_t and int have the same size on every platform we build for */
  _Static_assert(sizeof(int) == sizeof(int32_t), "int must be 32 bits");
  const size_t L = m->dims.L, N = (size_t)m->B * m->dims.T, NK = N * m->dims.K;
  region_t ir[] = {
      {(void **)&m->a.idx, L * NK},
      {(void **)&m->a.pos, L * NK},
      {(void **)&m->inputs, N},
      {(void **)&m->targets, N},
  };
  memcpy(r, ir, sizeof ir);
  return (int)(sizeof ir / sizeof ir[0]);
}

static size_t keep_bytes(const smoe_model_t *m) {
  return (size_t)m->dims.L * m->B * m->dims.T * m->dims.K;
}

static int keep_regions(smoe_model_t *m, region_t *r) {
  r[0] = (region_t){(void **)&m->a.keep, keep_bytes(m)};
  return 1;
}

static int scratch_regions(smoe_model_t *m, region_t *r) {
  const smoe_dims_t *d = &m->dims;
  const size_t N = (size_t)m->B * d->T, D = d->D, NK = N * d->K, F = d->F,
               qd = (size_t)d->H * d->hd, kd = (size_t)d->Hkv * d->hd, R = m->rows_max;
  smoe_scratch_t *s = &m->s;
  region_t sr[] = {
      {(void **)&s->dresid, N * D}, {(void **)&s->dx, N * D},       {(void **)&s->dq, N * qd},
      {(void **)&s->dk, N * kd},    {(void **)&s->dv, N * kd},      {(void **)&s->datty, N * qd},
      {(void **)&s->drouter, N * d->E}, {(void **)&s->dgw, NK},
      {(void **)&s->send, NK * D},  {(void **)&s->recv, R * D},     {(void **)&s->yslot, R * D},
      {(void **)&s->dye, R * D},    {(void **)&s->dxe, R * D},      {(void **)&s->dh13, R * 2 * F},
      {(void **)&s->dact, R * F},
  };
  memcpy(r, sr, sizeof sr);
  return (int)(sizeof sr / sizeof sr[0]);
}

static size_t regions_total(const region_t *r, int n) {
  size_t t = 0;
  for (int i = 0; i < n; i++) t += r[i].n;
  return t;
}

int smoe_model_plan(const smoe_config_t *c, int G, int B, smoe_model_plan_t *out,
                    smoe_err_t *err) {
  smoe_model_t m; /* only the sizes are set: nothing is allocated */
  memset(&m, 0, sizeof m);
  memset(out, 0, sizeof *out);
  dims_from_config(&m.dims, c);
  const smoe_dims_t *d = &m.dims;
  m.B = B, m.G = G;
  if ((m.S = smoe_model_slots(c, d->E, G, &m.H, err)) < 0) return -1;
  smoe_policy_kind_t kind;
  if (smoe_policy_kind(c->policy, &kind, err) != 0) return -1;
  m.drops = smoe_policy_drops(kind, c->capacity_factor, c->min_capacity, c->drop_order);
  m.rows_max = rows_bound(&m);
  region_t r[32];
  const size_t rb = sizeof(real);
  size_t n_dense = dense_numel(d), chunk = (n_dense + (size_t)G - 1) / (size_t)G;
  out->S = m.S, out->rows_max = m.rows_max, out->n_dense = n_dense, out->dense_chunk = chunk;
  out->dense = 2 * chunk * (size_t)G * rb + (size_t)d->L * d->E * rb +
               (strcmp(c->dense_optimizer, "sharded") == 0 ? chunk * rb : 0);
  out->slots = 2 * (size_t)d->L * m.S * smoe_expert_numel(d->D, d->F) * rb;
  out->acts = regions_total(r, act_regions(&m, r)) * rb +
              regions_total(r, int_regions(&m, r)) * sizeof(int32_t) + keep_bytes(&m);
  out->exchange = regions_total(r, scratch_regions(&m, r)) * rb +
                  (size_t)d->L * smoe_dispatch_bytes(G, m.S, (int64_t)m.rows_max,
                                                     (int64_t)B * d->T * d->K);
  return 0;
}

int smoe_model_init_dist(smoe_model_t *m, const smoe_config_t *c, int B, smoe_comm_t *comm,
                         smoe_err_t *err) {
  memset(m, 0, sizeof *m);
  if (smoe_backend_open(c->device, c->dtype, comm, &m->ops, err) != 0) return -1;
  smoe_dims_t *d = &m->dims;
  dims_from_config(d, c);
  m->aux_coef = c->aux_loss_coef, m->z_coef = c->z_loss_coef;
  m->B = B;
  m->comm = comm;
  m->G = smoe_comm_size(comm), m->rank = smoe_comm_rank(comm);
  if ((m->S = smoe_model_slots(c, d->E, m->G, &m->H, err)) < 0) return -1;
  /* a shadow pays when it saves shadow_rows rows: its rank receives the
   * weights, every other rank sends a 1/G slice (shadow.h's model in rows) */
  m->shadow_cost = (smoe_shadow_cost_t){1.0, c->shadow_rows, c->shadow_rows / m->G};
  smoe_placement_init(&m->placement, d->L, d->E, m->G, m->S);
  m->route = xmalloc(sizeof(int) * (size_t)d->L * m->G * d->E);
  smoe_policy_t first;
  double *init = c->init_from[0] ? xmalloc(sizeof(double) * (size_t)d->L * d->E) : NULL;
  int rc = smoe_policy_init(&first, c->policy, d->L, d->E, m->G, m->S, c->seed, 0, err);
  if (rc == 0) smoe_policy_shadow_slots(&first, m->H);
  smoe_err_t why;
  if (rc == 0 && init)
    rc = smoe_plog_mean_loads(c->init_from, d->L, d->E, init, &why) != 0
             ? smoe_fail(err, "placement.init_from = %s", why.msg)
             : smoe_policy_first_from(&first, init, &m->placement, err);
  else if (rc == 0)
    rc = smoe_policy_first(&first, &m->placement, err);
  free(init);
  if (rc != 0) {
    smoe_policy_free(&first);
    smoe_placement_free(&m->placement);
    free(m->route);
    return -1;
  }
  m->split_mode = smoe_policy_split_mode(first.kind);
  m->drops = smoe_policy_drops(first.kind, c->capacity_factor, c->min_capacity, c->drop_order);
  smoe_policy_free(&first);
  smoe_placement_routes(&m->placement, m->route, &m->arena);
  m->src_counts = xcalloc((size_t)d->L * m->G * d->E, sizeof(int64_t));
  m->take = xcalloc((size_t)m->G * m->G * m->S, sizeof(int64_t));
  /* slot s holds expert s exactly when one rank has every expert in order */
  m->one_slot_each = m->G == 1 && m->S == d->E;
  for (int s = 0; m->one_slot_each && s < m->S; s++)
    for (int l = 0; l < d->L; l++)
      m->one_slot_each &= m->placement.slot_expert[(size_t)l * m->S + s] == s;

  const size_t P = smoe_expert_numel(d->D, d->F);
  m->dense_mem = dense_layout(m->ops, &m->p, d, m->G, &m->n_dense);
  m->dense_grad_mem = dense_layout(m->ops, &m->g, d, m->G, NULL);
  m->dense_chunk = (m->n_dense + (size_t)m->G - 1) / (size_t)m->G;
  m->dense_lo = (size_t)m->rank * m->dense_chunk < m->n_dense ? (size_t)m->rank * m->dense_chunk
                                                               : m->n_dense;
  m->dense_len = m->n_dense - m->dense_lo < m->dense_chunk ? m->n_dense - m->dense_lo
                                                           : m->dense_chunk;
  m->dense_sharded = strcmp(c->dense_optimizer, "sharded") == 0;
  if (m->dense_sharded) m->dense_grad_shard = m->ops->alloc(m->dense_chunk * sizeof(real));
  m->n_experts = smoe_mul(smoe_mul((size_t)d->L, (size_t)m->S), P);
  m->experts = m->ops->alloc(m->n_experts * sizeof(real));
  m->experts_grad = m->ops->alloc(m->n_experts * sizeof(real));
  m->expert_bias = xcalloc((size_t)d->L * d->E, sizeof(real));
  m->expert_tensor = xmalloc(sizeof(int) * (size_t)d->L * d->E);
  build_tensor_table(m);
  m->init_seed = c->seed, m->init_std = c->init_std;
  init_params(m);

  /* expert rows: the policy's bound on what one rank's slots receive */
  m->rows_max = rows_bound(m);
  region_t r[32];
  size_t n_acts, n_ints, n_scratch;
  m->acts_mem = carve(m->ops, r, act_regions(m, r), sizeof(real), &n_acts);
  m->acts_int_mem = carve(m->ops, r, int_regions(m, r), sizeof(int32_t), &n_ints);
  m->a.keep = carve(m->ops, r, keep_regions(m, r), 1, NULL);
  m->scratch_mem = carve(m->ops, r, scratch_regions(m, r), sizeof(real), &n_scratch);
  m->bytes_acts = n_acts * sizeof(real) + n_ints * sizeof(int32_t) + keep_bytes(m);
  const size_t L = d->L, E = d->E, K = d->K;
  const size_t nrope = (size_t)d->T * (d->hd / 2);
  real *rope = xmalloc(sizeof(real) * 2 * nrope + 1);
  smoe_rope_tables(rope, rope + nrope, d->T, d->hd, d->theta);
  m->ops->to_device(m->rope_cos, rope, sizeof(real) * nrope);
  m->ops->to_device(m->rope_sin, rope + nrope, sizeof(real) * nrope);
  free(rope);
  m->tokens_host = xmalloc(sizeof(int32_t) * 2 * (size_t)B * d->T);
  m->choice_counts = xcalloc(L * K * E, sizeof(int64_t));
  m->prob_sum = xcalloc(L * E, sizeof(double));
  m->z_sum = xcalloc(L, sizeof(double));
  m->expert_counts = xcalloc(L * E, sizeof(int64_t));
  m->own_counts = xcalloc(L * E, sizeof(int64_t));
  m->dropped = xcalloc(L, sizeof(int64_t));
  m->plans = xcalloc(L, sizeof *m->plans);
  m->bytes_exchange = n_scratch * sizeof(real);
  for (size_t l = 0; l < L; l++) {
    smoe_dispatch_init(&m->plans[l], m->ops, m->G, m->S, m->rank, (int64_t)m->rows_max,
                       (int64_t)B * d->T * d->K);
    m->bytes_exchange += m->plans[l].bytes;
  }
  return 0;
}

void smoe_model_init(smoe_model_t *m, const smoe_config_t *c, int B) {
  smoe_comm_t *comm = smoe_comm_local();
  smoe_err_t err;
  if (smoe_model_init_dist(m, c, B, comm, &err) != 0) { /* G = 1: only a device that fails */
    fprintf(stderr, "swiftmoe: %s\n", err.msg);
    abort();
  }
  m->own_comm = 1;
}

void smoe_model_set_placement(smoe_model_t *m, const smoe_placement_t *p) {
  smoe_placement_copy(&m->placement, p);
  smoe_placement_routes(&m->placement, m->route, &m->arena);
}

void smoe_model_free(smoe_model_t *m) {
  const smoe_ops_t *o = m->ops ? m->ops : &smoe_ops_cpu; /* a model never initialised: all NULL */
  for (int l = 0; m->plans && l < m->dims.L; l++) smoe_dispatch_free(&m->plans[l]);
  free(m->plans);
  free(m->expert_tensor);
  o->free(m->dense_mem);
  o->free(m->dense_grad_mem);
  o->free(m->dense_grad_shard);
  o->free(m->experts);
  o->free(m->experts_grad);
  free(m->expert_bias);
  free(m->route);
  free(m->src_counts);
  free(m->take);
  smoe_placement_free(&m->placement);
  free(m->tensors);
  o->free(m->acts_mem);
  o->free(m->acts_int_mem);
  o->free(m->a.keep);
  o->free(m->scratch_mem);
  free(m->tokens_host);
  smoe_arena_free(&m->arena);
  free(m->choice_counts);
  free(m->prob_sum);
  free(m->z_sum);
  free(m->expert_counts);
  free(m->own_counts);
  free(m->dropped);
  if (m->own_comm) smoe_comm_finalize(m->comm);
  memset(m, 0, sizeof *m);
}

/* --------------------------------------------------------------- forward */

/* Routing by the load-aware split (swiftmoe) or the even split (symi, with
 * its drops): every rank's token counts per expert are all-gathered, every
 * rank computes the same split, and this rank's row of it sets how many of
 * its tokens for each expert go to each replica. */
static void route_split(smoe_model_t *m, int l, int N, const int32_t *idx, const real *gw,
                        uint8_t *keep) {
  const int E = m->dims.E, K = m->dims.K, G = m->G, S = m->S, NK = N * K;
  const size_t NKmax = (size_t)m->B * m->dims.T * K;
  const int *slot_expert = m->placement.slot_expert + (size_t)l * G * S;
  size_t mark = smoe_arena_mark(&m->arena);
  int64_t *src = m->src_counts + (size_t)l * G * E;
  double t0 = smoe_now();
  smoe_comm_allgather(m->comm, m->own_counts + (size_t)l * E, src, sizeof(int64_t) * E, SMOE_PHASE_COUNTS);
  uint8_t *use_keep = NULL;
  if (m->drops.kind == SMOE_DROPS_SYMI) { /* the policy's quotas from the global counts */
    int64_t *allowed = smoe_arena_take(&m->arena, sizeof(int64_t) * (size_t)G * E);
    m->dropped[l] = smoe_drops_quota(&m->drops, src, G, E, K, m->n_tokens,
                                     m->placement.replicas + (size_t)l * E, G, S, allowed);
    m->ops->capacity_keep(keep, idx, gw, N, K, E, allowed + (size_t)m->rank * E, 0, &m->arena);
    memcpy(src, allowed, sizeof(int64_t) * (size_t)G * E); /* what is routed */
    use_keep = keep;
  }
  if (m->H > 0 && m->split_mode == 1) {
    /* this step's shadows from its own counts, into the layer's last H
     * slots of each rank (the plan leaves them empty), then their weights */
    const int Sp = S - m->H;
    int *planned = smoe_arena_take(&m->arena, sizeof(int) * (size_t)G * Sp);
    int *with = m->placement.slot_expert + (size_t)l * G * S;
    for (int g = 0; g < G; g++)
      memcpy(planned + (size_t)g * Sp, with + (size_t)g * S, sizeof(int) * (size_t)Sp);
    const int n = smoe_shadow_plan(src, planned, E, G, Sp, m->H, &m->shadow_cost, with, &m->arena);
    smoe_placement_count_replicas(&m->placement);
    m->shadows += n;
    if (n > 0) m->fetch_shadows(m->fetch_arg, l);
  }
  if (m->split_mode == 2)
    smoe_split_even(src, slot_expert, E, G, S, m->take, &m->arena);
  else
    smoe_split(src, slot_expert, E, G, S, m->take, &m->arena);
  m->split_time += smoe_now() - t0;
  for (size_t i = 0; i < (size_t)G * G * S; i++) /* fingerprint: ranks must agree */
    m->split_hash = smoe_mix64(m->split_hash ^ (uint64_t)m->take[i]);
  smoe_dispatch_plan_split(&m->plans[l], m->comm, m->a.pos + l * NKmax, idx, use_keep,
                           m->take + (size_t)m->rank * G * S, slot_expert, E, NK, &m->arena);
  smoe_arena_release(&m->arena, mark);
}

/* The sparse MoE block of layer l on this rank's N tokens: route, drop over
 * capacity (capacity policy), dispatch rows to the expert slots, compute,
 * return, combine: out = mid + sum_k gw * expert(ln2). Router statistics are
 * summed over ranks so the aux and z losses are those of the global batch. */
static void moe_block_forward(smoe_model_t *m, int l, int N, real *out, const real *mid,
                              double *aux, double *z) {
  const smoe_dims_t *d = &m->dims;
  const int D = d->D, E = d->E, K = d->K, F = d->F, NK = N * K, S = m->S;
  const size_t P = smoe_expert_numel(D, F), NKmax = (size_t)m->B * d->T * K;
  smoe_acts_t *a = &m->a;
  real *ln2 = a->ln2 + (size_t)l * m->B * d->T * D, *probs = a->probs + (size_t)l * m->B * d->T * E;
  int32_t *idx = a->idx + l * NKmax;
  int *pos = a->pos + l * NKmax;
  uint8_t *keep = a->keep + l * NKmax;
  real *gw = a->gw + l * NKmax, *lse = a->lse + (size_t)l * m->B * d->T;
  int64_t *cc = m->choice_counts + (size_t)l * K * E;
  const size_t R = m->rows_max;

  m->ops->matmul_forward(probs, ln2, m->p.gate + (size_t)l * E * D, N, D, E);
  m->ops->router_forward(probs, lse, idx, gw, m->bias_dev + (size_t)l * E, N, E, K);
  m->ops->router_stats(cc, m->prob_sum + (size_t)l * E, &m->z_sum[l], probs, lse, idx, N, E, K);
  smoe_comm_allreduce_i64(m->comm, cc, (size_t)K * E, SMOE_PHASE_COUNTS);
  smoe_comm_allreduce_f64(m->comm, m->prob_sum + (size_t)l * E, (size_t)E, SMOE_PHASE_COUNTS);
  smoe_comm_allreduce_f64(m->comm, &m->z_sum[l], 1, SMOE_PHASE_COUNTS);
  *aux += smoe_router_aux_loss(cc, m->prob_sum + (size_t)l * E, m->n_tokens, E, K);
  *z += m->n_tokens ? m->z_sum[l] / (double)m->n_tokens : 0.0;
  for (int e = 0; e < E; e++) {
    int64_t n = 0;
    for (int k = 0; k < K; k++) n += cc[(size_t)k * E + e];
    m->expert_counts[(size_t)l * E + e] = n;
  }
  m->dropped[l] = 0;
  int64_t *mine = m->own_counts + (size_t)l * E; /* this rank's, before any drop */
  m->ops->histogram(mine, idx, NK, E);
  if (m->drops.kind == SMOE_DROPS_CAPACITY) { /* the policy's quotas from this rank's counts */
    size_t mark = smoe_arena_mark(&m->arena);
    int64_t *allowed = smoe_arena_take(&m->arena, sizeof(int64_t) * (size_t)E);
    m->dropped[l] = smoe_drops_quota(&m->drops, mine, 1, E, K, N, NULL, m->G, S, allowed);
    m->ops->capacity_keep(keep, idx, gw, N, K, E, allowed, m->drops.by_weight, &m->arena);
    smoe_arena_release(&m->arena, mark);
    smoe_comm_allreduce_i64(m->comm, &m->dropped[l], 1, SMOE_PHASE_COUNTS);
  }

  smoe_dispatch_t *plan = &m->plans[l];
  if (m->split_mode) {
    route_split(m, l, N, idx, gw, keep);
  } else {
    smoe_dispatch_plan(plan, m->comm, pos, idx, m->drops.kind == SMOE_DROPS_CAPACITY ? keep : NULL,
                       m->route + ((size_t)l * m->G + m->rank) * E, E, NK, &m->arena);
  }
  real *xe = a->xe + l * R * D, *ye_local = a->ye_local + l * NKmax * D;
  m->ops->moe_gather(m->s.send, ln2, pos, N, K, D);
  smoe_dispatch_to_slots(plan, m->comm, m->s.send, m->s.recv, xe, D, SMOE_PHASE_DISPATCH);
  m->ops->experts_forward(m->s.yslot, a->h13 + l * R * 2 * F, a->act + l * R * F, xe,
                  m->experts + (size_t)l * S * P, plan->slot_offsets, S, D, F);
  smoe_dispatch_from_slots(plan, m->comm, m->s.yslot, m->s.recv, ye_local, D,
                           SMOE_PHASE_COMBINE);
  m->ops->copy(out, mid, (size_t)N * D);
  m->ops->moe_combine(out, ye_local, gw, pos, N, K, D);
}

/* The forward up to the logits (a->logits); the router losses' sums into
 * aux and z. */
static void forward_logits(smoe_model_t *m, const int32_t *tokens, int B, double *aux_out,
                           double *z_out) {
  const smoe_dims_t *d = &m->dims;
  const int T = d->T, D = d->D, H = d->H, Hkv = d->Hkv, hd = d->hd, qd = H * hd,
            kd = Hkv * hd, N = B * T;
  const size_t ND = (size_t)N * D, NDmax = (size_t)m->B * T * D, Nmax = (size_t)m->B * T;
  smoe_acts_t *a = &m->a;
  const smoe_dense_t *p = &m->p;
  if (B > m->B) {
    fprintf(stderr, "swiftmoe: internal error: batch %d > allocated %d\n", B, m->B);
    abort();
  }
  m->B_last = B;
  int32_t *in = m->tokens_host, *tg = m->tokens_host + N;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      in[b * T + t] = tokens[(size_t)b * (T + 1) + t];
      tg[b * T + t] = tokens[(size_t)b * (T + 1) + t + 1];
    }
  m->ops->to_device(m->inputs, in, sizeof(int32_t) * N);
  m->ops->to_device(m->targets, tg, sizeof(int32_t) * N);
  m->ops->to_device(m->bias_dev, m->expert_bias, sizeof(real) * d->L * d->E);
  int64_t counts[2] = {N, 0}; /* tokens and targets, over all ranks */
  for (int n = 0; n < N; n++) counts[1] += tg[n] >= 0;
  m->split_time = 0;
  m->split_hash = 0;
  m->shadows = 0;
  smoe_comm_allreduce_i64(m->comm, counts, 2, SMOE_PHASE_OTHER);
  m->n_tokens = counts[0], m->n_valid = counts[1];
  m->ops->embedding_forward(a->resid, m->inputs, p->embed, N, D);

  double aux = 0, z = 0;
  for (int l = 0; l < d->L; l++) {
    real *x = a->resid + l * NDmax, *ln1 = a->ln1 + l * NDmax, *q = a->q + l * Nmax * qd,
         *k = a->k + l * Nmax * kd, *v = a->v + l * Nmax * kd, *atty = a->atty + l * Nmax * qd,
         *mid = a->mid + l * NDmax, *ln2 = a->ln2 + l * NDmax;
    m->ops->rmsnorm_forward(ln1, a->ln1_rstd + l * Nmax, x, p->ln1 + (size_t)l * D, N, D, d->eps);
    m->ops->matmul_forward(q, ln1, p->wq + (size_t)l * qd * D, N, D, qd);
    m->ops->matmul_forward(k, ln1, p->wk + (size_t)l * kd * D, N, D, kd);
    m->ops->matmul_forward(v, ln1, p->wv + (size_t)l * kd * D, N, D, kd);
    m->ops->rope_forward(q, m->rope_cos, m->rope_sin, N, T, H, hd);
    m->ops->rope_forward(k, m->rope_cos, m->rope_sin, N, T, Hkv, hd);
    m->ops->attention_forward(atty, a->att + (size_t)l * m->B * H * T * T, q, k, v, B, T, H, Hkv, hd);
    m->ops->copy(mid, x, ND);
    m->ops->gemm(0, 1, N, D, qd, 1, atty, qd, p->wo + (size_t)l * D * qd, qd, 1, mid, D);
    m->ops->rmsnorm_forward(ln2, a->ln2_rstd + l * Nmax, mid, p->ln2 + (size_t)l * D, N, D, d->eps);
    moe_block_forward(m, l, N, a->resid + (l + 1) * NDmax, mid, &aux, &z);
  }
  m->ops->rmsnorm_forward(a->lnf, a->lnf_rstd, a->resid + (size_t)d->L * NDmax, p->lnf, N, D, d->eps);
  m->ops->matmul_forward(a->logits, a->lnf, p->lm_head, N, D, d->V);
  *aux_out = aux, *z_out = z;
}

double smoe_model_forward(smoe_model_t *m, const int32_t *tokens, int B) {
  const smoe_dims_t *d = &m->dims;
  const int N = B * d->T;
  smoe_acts_t *a = &m->a;
  double aux, z;
  forward_logits(m, tokens, B, &aux, &z);
  /* the loss, and in place of the logits its gradient: the mean over the
   * global batch's targets */
  int n_valid = 0;
  double ce_local = m->ops->crossentropy(a->logits, m->targets, N, d->V,
                                         (real)(m->n_valid ? 1.0 / (double)m->n_valid : 0.0),
                                         &n_valid, &m->arena);
  double sum = ce_local * n_valid;
  smoe_comm_allreduce_f64(m->comm, &sum, 1, SMOE_PHASE_OTHER);
  m->ce = m->n_valid > 0 ? sum / (double)m->n_valid : 0.0;
  m->aux = aux / d->L;
  m->z = z / d->L;
  m->loss = m->ce + m->aux_coef * m->aux + m->z_coef * m->z;
  return m->loss;
}

void smoe_model_logits(smoe_model_t *m, const int32_t *tokens, int B, real *logits) {
  double aux, z;
  forward_logits(m, tokens, B, &aux, &z);
  m->ops->to_host(logits, m->a.logits, sizeof(real) * (size_t)B * m->dims.T * m->dims.V);
}

/* -------------------------------------------------------------- backward */

void smoe_model_zero_grad(smoe_model_t *m) {
  m->ops->fill(m->dense_grad_mem, 0, m->n_dense);
  m->ops->fill(m->experts_grad, 0, m->n_experts);
}

/* The MoE block backward of layer l: dresid holds d(out); adds d(mid) into
 * it through ln2 and fills the expert and router gradients. */
static void moe_block_backward(smoe_model_t *m, int l, int N, real *aux_dp) {
  const smoe_dims_t *d = &m->dims;
  const int D = d->D, E = d->E, K = d->K, F = d->F, L = d->L, S = m->S;
  const size_t P = smoe_expert_numel(D, F), NKmax = (size_t)m->B * d->T * K,
               Nmax = (size_t)m->B * d->T, R = m->rows_max;
  const smoe_acts_t *a = &m->a;
  const smoe_scratch_t *s = &m->s;
  const smoe_dispatch_t *plan = &m->plans[l];
  const int32_t *idx = a->idx + l * NKmax;
  const int *pos = a->pos + l * NKmax;
  const real *gw = a->gw + l * NKmax, *ln2 = a->ln2 + l * Nmax * D,
             *probs = a->probs + l * Nmax * E;

  m->ops->moe_combine_backward(s->send, s->dgw, s->dresid, a->ye_local + l * NKmax * D, gw, pos, N, K, D);
  smoe_dispatch_to_slots(plan, m->comm, s->send, s->recv, s->dye, D, SMOE_PHASE_DISPATCH);
  m->ops->experts_backward(s->dxe, m->experts_grad + (size_t)l * S * P, s->dh13, s->dact, s->dye,
                   a->xe + l * R * D, a->h13 + l * R * 2 * F, a->act + l * R * F,
                   m->experts + (size_t)l * S * P, plan->slot_offsets, S, D, F);
  smoe_dispatch_from_slots(plan, m->comm, s->dxe, s->recv, s->send, D, SMOE_PHASE_COMBINE);
  m->ops->fill(s->dx, 0, (size_t)N * D);
  m->ops->moe_gather_backward(s->dx, s->send, pos, N, K, D);

  const int64_t *cc = m->choice_counts + (size_t)l * K * E;
  const double n2 = (double)m->n_tokens * (double)m->n_tokens;
  for (int e = 0; e < E; e++) {
    int64_t c = 0;
    for (int k = 0; k < K; k++) c += cc[(size_t)k * E + e];
    aux_dp[e] = (real)(n2 > 0 ? m->aux_coef / L * E * (double)c / n2 : 0.0);
  }
  real z_scale = (real)(m->n_tokens ? m->z_coef * 2.0 / ((double)L * m->n_tokens) : 0.0);
  m->ops->to_device(m->aux_dp_dev, aux_dp, sizeof(real) * E);
  m->ops->router_backward(s->drouter, probs, a->lse + l * Nmax, idx, gw, s->dgw, m->aux_dp_dev,
                          z_scale, N, E, K);
  m->ops->matmul_backward(s->dx, m->g.gate + (size_t)l * E * D, s->drouter, ln2,
                  m->p.gate + (size_t)l * E * D, N, D, E);
  m->ops->rmsnorm_backward(s->dresid, m->g.ln2 + (size_t)l * D, s->dx, a->mid + l * Nmax * D,
                   m->p.ln2 + (size_t)l * D, a->ln2_rstd + l * Nmax, N, D, &m->arena);
}

/* Sharded dense optimizer: the summed gradient of dense_grad_mem[x - base,
 * + n), final on every rank, starts on its way to the slices' owners (a
 * bucket); smoe_model_backward waits for all of them at its end. */
static void dense_bucket(smoe_model_t *m, const real *x, size_t n) {
  if (!m->dense_sharded) return;
  size_t lo = (size_t)(x - m->dense_grad_mem);
  smoe_comm_reduce_scatter_start(m->comm, m->dense_grad_mem, lo, lo + n, m->dense_chunk,
                                 m->dense_grad_shard, SMOE_PHASE_DENSE_GRAD);
  if (m->buckets_started++ == 0) m->t_first_bucket = smoe_now();
}

void smoe_model_backward(smoe_model_t *m) {
  const smoe_dims_t *d = &m->dims;
  const int B = m->B_last, T = d->T, D = d->D, E = d->E, H = d->H, Hkv = d->Hkv, hd = d->hd,
            qd = H * hd, kd = Hkv * hd, N = B * T, L = d->L;
  const size_t ND = (size_t)N * D, NDmax = (size_t)m->B * T * D, Nmax = (size_t)m->B * T;
  const smoe_acts_t *a = &m->a;
  const smoe_dense_t *p = &m->p, *g = &m->g;
  const smoe_scratch_t *s = &m->s;

  /* the forward left the loss's gradient in place of the logits */
  m->ops->fill(s->dx, 0, ND);
  m->ops->matmul_backward(s->dx, g->lm_head, a->logits, a->lnf, p->lm_head, N, D, d->V);
  m->ops->fill(s->dresid, 0, ND);
  m->ops->rmsnorm_backward(s->dresid, g->lnf, s->dx, a->resid + (size_t)L * NDmax, p->lnf, a->lnf_rstd, N,
                   D, &m->arena);
  /* buckets as their gradients become final: the final norm and the untied
   * head (and the padding) first, each layer's tensors after its backward,
   * the embedding (the tied head's too) last */
  m->buckets_started = 0;
  dense_bucket(m, g->lnf, m->dense_chunk * (size_t)m->G - (size_t)(g->lnf - m->dense_grad_mem));

  size_t mark = smoe_arena_mark(&m->arena);
  real *aux_dp = smoe_arena_take(&m->arena, sizeof(real) * (size_t)E);
  for (int l = L - 1; l >= 0; l--) {
    const real *x = a->resid + l * NDmax, *ln1 = a->ln1 + l * NDmax, *q = a->q + l * Nmax * qd,
               *k = a->k + l * Nmax * kd, *v = a->v + l * Nmax * kd,
               *atty = a->atty + l * Nmax * qd;
    moe_block_backward(m, l, N, aux_dp);

    /* attention block: mid = x + atty wo^T */
    m->ops->gemm(0, 0, N, qd, D, 1, s->dresid, D, p->wo + (size_t)l * D * qd, qd, 0, s->datty, qd);
    m->ops->matmul_backward(NULL, g->wo + (size_t)l * D * qd, s->dresid, atty, p->wo + (size_t)l * D * qd,
                    N, qd, D);
    m->ops->fill(s->dq, 0, (size_t)N * qd);
    m->ops->fill(s->dk, 0, (size_t)N * kd);
    m->ops->fill(s->dv, 0, (size_t)N * kd);
    m->ops->attention_backward(s->dq, s->dk, s->dv, s->datty, a->att + (size_t)l * m->B * H * T * T, q, k,
                       v, B, T, H, Hkv, hd, &m->arena);
    m->ops->rope_backward(s->dq, m->rope_cos, m->rope_sin, N, T, H, hd);
    m->ops->rope_backward(s->dk, m->rope_cos, m->rope_sin, N, T, Hkv, hd);
    m->ops->fill(s->dx, 0, ND);
    m->ops->matmul_backward(s->dx, g->wq + (size_t)l * qd * D, s->dq, ln1, p->wq + (size_t)l * qd * D, N,
                    D, qd);
    m->ops->matmul_backward(s->dx, g->wk + (size_t)l * kd * D, s->dk, ln1, p->wk + (size_t)l * kd * D, N,
                    D, kd);
    m->ops->matmul_backward(s->dx, g->wv + (size_t)l * kd * D, s->dv, ln1, p->wv + (size_t)l * kd * D, N,
                    D, kd);
    m->ops->rmsnorm_backward(s->dresid, g->ln1 + (size_t)l * D, s->dx, x, p->ln1 + (size_t)l * D,
                     a->ln1_rstd + l * Nmax, N, D, &m->arena);
    dense_bucket(m, g->ln1 + (size_t)l * D, (size_t)D);
    dense_bucket(m, g->wq + (size_t)l * qd * D, (size_t)qd * D);
    dense_bucket(m, g->wk + (size_t)l * kd * D, (size_t)kd * D);
    dense_bucket(m, g->wv + (size_t)l * kd * D, (size_t)kd * D);
    dense_bucket(m, g->wo + (size_t)l * D * qd, (size_t)D * qd);
    dense_bucket(m, g->ln2 + (size_t)l * D, (size_t)D);
    dense_bucket(m, g->gate + (size_t)l * E * D, (size_t)E * D);
  }
  smoe_arena_release(&m->arena, mark);
  m->ops->embedding_backward(g->embed, s->dresid, m->inputs, N, D, d->V);
  m->t_backward_done = smoe_now();
  /* data parallel: dense gradients summed over the ranks: this rank's slice
   * (sharded optimizer), or all of them */
  if (m->dense_sharded) {
    dense_bucket(m, g->embed, (size_t)d->V * D);
    smoe_comm_wait_all(m->comm);
    return;
  }
  const size_t bucket = (size_t)1 << 22;
  for (size_t i = 0; i < m->n_dense; i += bucket)
    smoe_comm_allreduce_real(m->comm, m->dense_grad_mem + i,
                             m->n_dense - i < bucket ? m->n_dense - i : bucket,
                             SMOE_PHASE_DENSE_GRAD);
}

double smoe_model_flops_per_token(const smoe_model_t *m) {
  /* 6 x (matmul parameters used per token) + attention scores and values
   * (PaLM's 12 L H d T, counting the full T x T as the field does). */
  const smoe_dims_t *d = &m->dims;
  double D = d->D, qd = (double)d->H * d->hd, kd = (double)d->Hkv * d->hd;
  double per_layer = D * qd * 2 + D * kd * 2 + D * d->E + d->K * 3.0 * D * d->F;
  double n = d->L * per_layer + (double)d->V * D;
  return 6.0 * n + 12.0 * d->L * qd * d->T;
}
