/* model.h: the Mixtral-architecture transformer: parameter layout, the
 * tensor table, activations, forward and backward.
 *
 * Memory follows llm.c: the dense parameters live in one allocation with a
 * table of shaped pointers (smoe_dense_t), their gradients in a second with
 * the same layout; expert parameters are one (L, E, P) buffer (see moe.h for
 * P), expert gradients a second; activations and backward scratch are
 * allocated once for a batch of B sequences. Nothing is allocated in a step.
 * The tensor table names every HF tensor (name, shape, buffer, offset), so
 * export, the PyTorch reference and, later, the sharded optimizer and the
 * checkpoint code walk one table instead of hard-coding indices. */
#ifndef SMOE_MODEL_H
#define SMOE_MODEL_H

#include "common.h"
#include "config.h"

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
  real *xe;       /* (L, N*K, D) expert inputs, expert-sorted */
  real *h13;      /* (L, N*K, 2F) w1 and w3 outputs */
  real *act;      /* (L, N*K, F) silu(h1) * h3 */
  real *ye;       /* (L, N*K, D) expert outputs */
  real *lnf;      /* (N, D) */
  real *lnf_rstd; /* (N) */
  real *logits;   /* (N, V); probabilities after the loss */
  int32_t *idx;   /* (L, N, K) selected experts */
  int *pos;       /* (L, N*K) row of each assignment in expert-sorted order */
  int *counts;    /* (L, E) assignments per expert */
  int *offsets;   /* (L, E+1) */
} smoe_acts_t;

typedef struct {
  real *dresid;  /* (N, D) */
  real *dx;      /* (N, D) */
  real *dq;      /* (N, H*hd) */
  real *dk;      /* (N, Hkv*hd) */
  real *dv;      /* (N, Hkv*hd) */
  real *datty;   /* (N, H*hd) */
  real *dlogits; /* (N, V) */
  real *drouter; /* (N, E) */
  real *dgw;     /* (N, K) */
  real *dye;     /* (N*K, D) */
  real *dxe;     /* (N*K, D) */
  real *dh13;    /* (N*K, 2F) */
  real *dact;    /* (N*K, F) */
} smoe_scratch_t;

typedef struct {
  smoe_dims_t dims;
  double aux_coef, z_coef;
  int B;      /* sequences allocated per forward */
  int B_last; /* sequences in the last forward */

  smoe_dense_t p, g;  /* dense parameters and gradients (pointer tables) */
  real *dense_mem, *dense_grad_mem;
  size_t n_dense;     /* elements of each */
  real *experts;      /* (L, E, P) expert parameters */
  real *experts_grad; /* (L, E, P) */
  size_t n_experts;   /* L * E * P */
  real *expert_bias;  /* (L, E) aux-loss-free selection bias; not trained by gradients */

  smoe_tensor_t *tensors;
  int n_tensors;

  smoe_acts_t a;
  real *acts_mem;
  void *acts_int_mem;
  smoe_scratch_t s;
  real *scratch_mem;
  real *rope_cos, *rope_sin; /* (T, hd/2) */
  int32_t *inputs, *targets; /* (B, T) */

  /* results of the last forward */
  double loss, ce, aux, z;      /* total = ce + aux_coef*aux + z_coef*z (aux, z: layer means) */
  int64_t *choice_counts;       /* (L, K, E) */
  double *prob_sum;             /* (L, E) */
  double *z_sum;                /* (L) */
  int n_valid;                  /* target tokens counted in ce */
} smoe_model_t;

/* Sizes from the config; allocates everything for batches of up to B
 * sequences and initialises parameters from cfg->seed. */
void smoe_model_init(smoe_model_t *m, const smoe_config_t *cfg, int B);
void smoe_model_free(smoe_model_t *m);

/* tokens (B, T+1): inputs are [:, :T], targets [:, 1:]. Computes logits and
 * the losses (m->loss etc.); returns the total loss. B <= the allocated B. */
double smoe_model_forward(smoe_model_t *m, const int32_t *tokens, int B);
void smoe_model_zero_grad(smoe_model_t *m);
/* Gradients of m->loss from the last forward, accumulated into the grads. */
void smoe_model_backward(smoe_model_t *m);

real *smoe_tensor_data(const smoe_model_t *m, const smoe_tensor_t *t);
real *smoe_tensor_grad(const smoe_model_t *m, const smoe_tensor_t *t);
const smoe_tensor_t *smoe_model_find(const smoe_model_t *m, const char *name);

/* Parameters actually multiplied per token (for FLOP counts): dense matmuls
 * + top_k experts + lm head. */
double smoe_model_flops_per_token(const smoe_model_t *m);

#endif
