/* model.h: the Mixtral-architecture transformer: parameter layout, the
 * tensor table, activations, forward and backward.
 *
 * Memory follows llm.c: the dense parameters live in one allocation with a
 * table of shaped pointers (smoe_dense_t), their gradients in a second with
 * the same layout (every such buffer from the backend's allocator, and every
 * per-token op through its op table: backend.h); this rank's expert slots are one (L, S, P) buffer (see
 * moe.h for P), their gradients a second; activations and backward scratch
 * are allocated once for a batch of B sequences. Temporary arrays of a
 * forward or backward (router counts, dispatch plans, the split, per-thread
 * attention scratch) come from the model's arena (arena.h), sized by the
 * dimensions: after the first step a training step allocates nothing in the
 * engine's code (test_step_alloc counts it). glibc's qsort, used by the
 * planner and by the capacity policy's weight order, may still allocate on
 * its own for arrays over 1 KiB.
 *
 * Over G ranks (comm.h) the dense parameters are replicated (data parallel:
 * each rank runs its share of the batch, gradients are summed) and the
 * experts are spread over the ranks' slots by the placement (a rank holds
 * only the experts of its slots, never the whole (L, E, P) tensor); each MoE layer
 * dispatches token rows to the slots and combines the outputs (dispatch.h).
 * Losses and gradients are those of the whole global batch on every rank.
 * The tensor table names every HF tensor (name, shape, buffer, offset; an
 * expert's offset is into a virtual (L, E, P) array that nothing allocates),
 * so export, import and the PyTorch reference walk one table instead of
 * hard-coding indices. */
#ifndef SMOE_MODEL_H
#define SMOE_MODEL_H

#include "arena.h"
#include "backend.h"
#include "comm.h"
#include "common.h"
#include "config.h"
#include "dispatch.h"
#include "placement.h"
#include "shadow.h"
#include "policy.h"

typedef struct {
  int V, D, L, H, Hkv, hd, T, E, K, F;
  double eps, theta;
  int tied;
} smoe_dims_t;

typedef struct {
  real *embed;   /* (V, D) */
  real *ln1;     /* (L, D) input_layernorm */
  real *wq;      /* (L, H*hd, D) */
  real *wk;      /* (L, Hkv*hd, D) */
  real *wv;      /* (L, Hkv*hd, D) */
  real *wo;      /* (L, D, H*hd) */
  real *ln2;     /* (L, D) post_attention_layernorm */
  real *gate;    /* (L, E, D) router */
  real *lnf;     /* (D) final norm */
  real *lm_head; /* (V, D); == embed when tied */
} smoe_dense_t;

enum { SMOE_BUF_DENSE = 0, SMOE_BUF_EXPERT = 1 };

typedef struct {
  char name[96]; /* HF Mixtral name, e.g. model.layers.0.self_attn.q_proj.weight */
  int ndim;
  int shape[2];
  int buffer;    /* SMOE_BUF_DENSE or SMOE_BUF_EXPERT */
  size_t offset; /* elements from the start of that buffer */
  size_t numel;
  int layer, expert; /* -1 where not applicable */
} smoe_tensor_t;

typedef struct {
  real *resid;    /* (L+1, N, D) residual stream entering each layer; [L] is the output */
  real *ln1;      /* (L, N, D) */
  real *ln1_rstd; /* (L, N) */
  real *q;        /* (L, N, H*hd) after RoPE */
  real *k;        /* (L, N, Hkv*hd) after RoPE */
  real *v;        /* (L, N, Hkv*hd) */
  real *att;      /* (L, B, H, T, T) attention probabilities */
  real *atty;     /* (L, N, H*hd) attention output before o_proj */
  real *mid;      /* (L, N, D) residual after attention */
  real *ln2;      /* (L, N, D) */
  real *ln2_rstd; /* (L, N) */
  real *probs;    /* (L, N, E) router softmax */
  real *lse;      /* (L, N) router logsumexp */
  real *gw;       /* (L, N, K) renormalised gate weights */
  real *xe;       /* (L, R, D) expert inputs in slot order (R = rows_max) */
  real *h13;      /* (L, R, 2F) w1 and w3 outputs */
  real *act;      /* (L, R, F) silu(h1) * h3 */
  real *lnf;      /* (N, D) */
  real *lnf_rstd; /* (N) */
  real *logits;   /* (N, V); after the loss, its gradient (the loss scaled to the global mean) */
  int32_t *idx;   /* (L, N, K) selected experts */
  int *pos;       /* (L, N*K) send-order row of each assignment; -1 = dropped */
  uint8_t *keep;  /* (L, N*K) 1 = computed, 0 = dropped by the capacity policy */
  real *ye_local; /* (L, N*K, D) expert outputs back at the token's rank, send order */
} smoe_acts_t;

typedef struct {
  real *dresid;  /* (N, D) */
  real *dx;      /* (N, D) */
  real *dq;      /* (N, H*hd) */
  real *dk;      /* (N, Hkv*hd) */
  real *dv;      /* (N, Hkv*hd) */
  real *datty;   /* (N, H*hd) */
  real *drouter; /* (N, E) */
  real *dgw;     /* (N, K) */
  real *send;    /* (N*K, D) rows in send order */
  real *recv;    /* (R, D) rows in receive order; R = rows_max */
  real *yslot;   /* (R, D) expert outputs in slot order */
  real *dye;     /* (R, D) */
  real *dxe;     /* (R, D) */
  real *dh13;    /* (R, 2F) */
  real *dact;    /* (R, F) */
} smoe_scratch_t;

typedef struct {
  const smoe_ops_t *ops; /* the backend every per-token op runs on (backend.h) */
  smoe_dims_t dims;
  double aux_coef, z_coef;
  int B;      /* sequences allocated per forward */
  int B_last; /* sequences in the last forward */

  smoe_dense_t p, g;  /* dense parameters and gradients (pointer tables) */
  real *dense_mem, *dense_grad_mem;
  size_t n_dense;     /* elements of each (both padded with zeros to dense_chunk * G) */
  /* the dense optimizer's slices: rank g owns [dense_lo, dense_lo + dense_len) */
  size_t dense_chunk, dense_lo, dense_len; /* chunk = ceil(n_dense / G) */
  int dense_sharded;      /* training.dense_optimizer = sharded: backward reduce-scatters */
  real *dense_grad_shard; /* (dense_chunk) this rank's slice of the summed dense gradients */
  int buckets_started;    /* the last backward's dense reduce-scatter buckets (sharded) */
  double t_first_bucket;  /* when it started the first (smoe_now) */
  double t_backward_done; /* when its compute ended, before it waited for the buckets */
  real *experts;      /* (L, S, P) the expert replicas in this rank's slots */
  real *experts_grad; /* (L, S, P) */
  size_t n_experts;   /* L * S * P */
  int one_slot_each;  /* one rank whose slot s holds expert s (then experts is (L, E, P)) */
  int *expert_tensor; /* (L, E) the table index of each expert's w1 (w3, w2 follow) */
  uint64_t init_seed; /* the initialiser's seed and standard deviation */
  double init_std;
  real *expert_bias;  /* (L, E) aux-loss-free selection bias; not trained by gradients (host) */
  real *bias_dev;     /* (L, E) its copy in backend memory, sent at each forward */
  real *aux_dp_dev;   /* (E) the aux loss gradient per expert, for router_backward */

  /* the world and the placement */
  smoe_comm_t *comm;
  int own_comm; /* comm was created by the model (a world of one) */
  int G, rank, S;     /* S slots per rank and layer: the policy's, then H shadow slots */
  int H;              /* placement.shadow_slots (swiftmoe, G > 1), else 0 */
  smoe_shadow_cost_t shadow_cost;
  /* fills the shadow slots of layer l from the optimizer shards (step.c) */
  void (*fetch_shadows)(void *arg, int l);
  void *fetch_arg;
  int64_t shadows;    /* shadows placed in the last forward, all layers */
  smoe_placement_t placement;
  int *route;        /* (L, G, E) global slot (g*S + s) that rank q's tokens for e go to */
  int split_mode;    /* 0: by route; 1: the load-aware split; 2: even split (symi) */
  int64_t *src_counts; /* (L, G, E) the last forward's tokens from each rank to each expert
                          (split modes; routed counts after symi's drops) */
  int64_t *take;     /* (G, G*S) the split: tokens from each rank to each global slot */
  double split_time; /* seconds splitting in the last forward */
  uint64_t split_hash; /* fingerprint of the last forward's splits */
  smoe_drops_t drops; /* which routed tokens are computed (the policy's rule, policy.h) */
  smoe_dispatch_t *plans; /* (L) the last forward's exchange plans */
  size_t rows_max;   /* R: the most rows this rank's slots receive in a layer, the
                        policy's bound (smoe_drops_rows_bound); expert buffers hold R rows */

  smoe_tensor_t *tensors;
  int n_tensors;

  smoe_acts_t a;
  real *acts_mem;
  void *acts_int_mem;
  smoe_scratch_t s;
  real *scratch_mem;
  real *rope_cos, *rope_sin; /* (T, hd/2), backend memory */
  smoe_arena_t arena;        /* temporary arrays of a forward/backward (arena.h) */
  size_t bytes_acts;         /* what init allocated for activations (a) */
  size_t bytes_exchange;     /* ... for backward scratch and exchange buffers (s), and the plans */
  int32_t *inputs, *targets; /* (B, T), backend memory */
  int32_t *tokens_host;       /* (2, B, T): inputs then targets, on their way there */

  /* results of the last forward */
  double loss, ce, aux, z;      /* total = ce + aux_coef*aux + z_coef*z (aux, z: layer means) */
  int64_t *choice_counts;       /* (L, K, E) */
  double *prob_sum;             /* (L, E) */
  double *z_sum;                /* (L) */
  int64_t n_valid;              /* target tokens counted in ce, over all ranks */
  int64_t n_tokens;             /* tokens in the forward, over all ranks */
  int64_t *expert_counts;       /* (L, E) tokens routed to each expert, over all ranks */
  int64_t *own_counts;          /* (L, E) this rank's share of them (before any drop) */
  int64_t *dropped;             /* (L) assignments dropped by capacity, over all ranks */
} smoe_model_t;

/* What smoe_model_init_dist allocates on one of G ranks for batches of B
 * sequences, computed without allocating (the same region lists): bytes of
 * the dense parameters, gradients, expert bias and gradient slice (dense),
 * the slots' weights and gradients (slots), the activations (acts) and the
 * backward scratch, exchange buffers and plans (exchange). */
typedef struct {
  int S;
  size_t rows_max, n_dense, dense_chunk;
  size_t dense, slots, acts, exchange;
} smoe_model_plan_t;
int smoe_model_plan(const smoe_config_t *c, int G, int B, smoe_model_plan_t *out,
                    smoe_err_t *err);
/* S, the slots per rank and layer of config c on G ranks: the policy's
 * (smoe_slots_per_rank), then *H = placement.shadow_slots more for swiftmoe
 * on more than one rank (else 0). -1 with err when they do not fit. */
int smoe_model_slots(const smoe_config_t *c, int E, int G, int *H, smoe_err_t *err);

/* Sizes from the config; allocates everything for batches of up to B
 * sequences per rank on the ranks of comm, places the experts
 * (placement.policy) and initialises parameters from cfg->seed (the same
 * values whatever the world size). Returns 0 or -1 (a world size the
 * placement cannot use). */
int smoe_model_init_dist(smoe_model_t *m, const smoe_config_t *cfg, int B, smoe_comm_t *comm,
                         smoe_err_t *err);
/* The same in a world of one process. */
void smoe_model_init(smoe_model_t *m, const smoe_config_t *cfg, int B);
void smoe_model_free(smoe_model_t *m);

/* tokens (B, T+1): inputs are [:, :T], targets [:, 1:]. Computes logits and
 * the losses (m->loss etc.); returns the total loss. B <= the allocated B. */
double smoe_model_forward(smoe_model_t *m, const int32_t *tokens, int B);
/* The same forward without the loss: logits (B*T, V, host) of every
 * position (targets unused). */
void smoe_model_logits(smoe_model_t *m, const int32_t *tokens, int B, real *logits);
void smoe_model_zero_grad(smoe_model_t *m);
/* Gradients of m->loss from the last forward, accumulated into the grads;
 * dense gradients are then summed over the ranks: all-reduced into
 * dense_grad_mem after the pass, or (dense_sharded) reduce-scattered, this
 * rank's slice into dense_grad_shard (dense_grad_mem keeps this rank's own
 * sums), in buckets started during the pass as each layer's gradients are
 * final, so the exchange overlaps the layers below; waited for at the end. */
void smoe_model_backward(smoe_model_t *m);

/* Takes placement p (a copy) for the next forward: routes tokens to it. The
 * slots must already hold its weights (smoe_shards_weights). */
void smoe_model_set_placement(smoe_model_t *m, const smoe_placement_t *p);

/* Values [lo, lo + n) of expert (l, e)'s vector (moe.h) as the initialiser
 * makes them from the config's seed: a function of (seed, tensor, element)
 * only, so slots and shards are filled without the whole expert tensor. */
void smoe_model_expert_init(const smoe_model_t *m, int l, int e, size_t lo, size_t n, real *out);
/* The first slot of this rank holding expert (l, e) (P values), or NULL. */
real *smoe_model_expert(const smoe_model_t *m, int l, int e);
/* Values [off, off + n) of expert (l, e) into every slot of this rank holding it. */
void smoe_model_put_expert(smoe_model_t *m, int l, int e, size_t off, const real *x, size_t n);

/* A tensor's values: dense ones always; an expert's where one of this
 * rank's slots holds it, else NULL (no rank holds every expert, unless it
 * is the only one). */
real *smoe_tensor_data(const smoe_model_t *m, const smoe_tensor_t *t);
/* A tensor's gradient; expert gradients only when one_slot_each (NULL else). */
real *smoe_tensor_grad(const smoe_model_t *m, const smoe_tensor_t *t);
const smoe_tensor_t *smoe_model_find(const smoe_model_t *m, const char *name);

/* Parameters actually multiplied per token (for FLOP counts): dense matmuls
 * + top_k experts + lm head. */
double smoe_model_flops_per_token(const smoe_model_t *m);

#endif
