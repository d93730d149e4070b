/* config.h: every setting of a run, its INI form, defaults and validation.
 *
 * One table in config.c lists every key (section, name, type, default, range,
 * help); parsing, --set overrides, validation, the resolved config.ini that a
 * run writes and the README's reference all come from it. */
#ifndef SMOE_CONFIG_H
#define SMOE_CONFIG_H

#include "common.h"

typedef struct {
  /* [model] — names follow HF's MixtralConfig where one exists */
  int vocab_size;          /* V; 256 for byte-level data */
  int dim;                 /* D, hidden_size */
  int n_layers;            /* L, num_hidden_layers */
  int n_heads;             /* H, num_attention_heads */
  int n_kv_heads;          /* Hkv, num_key_value_heads; divides H */
  int seq_len;             /* T, tokens per training window (positions 0..T-1) */
  double rope_theta;       /* RoPE base */
  double rms_norm_eps;     /* RMSNorm epsilon */
  int tie_word_embeddings; /* 1: lm_head shares the embedding matrix */
  double init_std;         /* std of the normal init of every matrix */
  /* [moe] */
  int num_experts;         /* E, num_local_experts */
  int top_k;               /* K, num_experts_per_tok */
  int expert_dim;          /* F, intermediate_size */
  double aux_loss_coef;    /* load-balancing loss coefficient (router_aux_loss_coef) */
  double z_loss_coef;      /* router z-loss coefficient */
  double bias_update_rate; /* aux-loss-free balancing: bias step per update; 0 = off */
  /* [data] */
  char data_path[SMOE_PATHLEN]; /* "" = built-in fortunes corpus */
  double val_fraction;          /* share of records held out for validation */
  /* [training] */
  int global_batch_size; /* sequences per step, over all ranks */
  int steps;             /* optimizer steps */
  double lr;             /* peak learning rate */
  double min_lr;         /* learning rate at the end of the cosine */
  int warmup_steps;      /* linear warmup steps; SMOE_AUTO: smoe_config_warmup decides */
  double weight_decay;   /* AdamW decoupled weight decay */
  double beta1, beta2, adam_eps;
  double grad_clip;   /* max global grad norm; 0 = off */
  int eval_every;     /* validation every N steps (and at the end); 0 = only at the end */
  int sample_every;   /* a text sample every N steps (rank 0); 0 = off */
  int eval_windows;   /* validation windows per evaluation */
  char expert_optimizer[16]; /* "sharded" or "replicated" (baseline) */
  char dense_optimizer[16];  /* "sharded" (ZeRO-1) or "replicated" (baseline) */
  char device[8];     /* "cpu", "cuda" or "guard" (backend.h) */
  char dtype[8];      /* "fp32" or "bf16": GEMM operands (bf16: cuda only) */
  uint64_t seed;      /* init + data sampling */
  int threads;        /* OpenMP/BLAS threads; 0 = all cores */
  /* [placement] */
  char policy[32];        /* expert placement policy: see policy.h */
  int slots_per_rank;     /* S; 0 = the policy's default */
  double load_ema;        /* swiftmoe/symi load smoothing */
  int shadow_slots;       /* swiftmoe: H same-step shadow slots per rank; 0 = none */
  double shadow_rows;     /* ... placed when they save more than this many rows */
  char init_from[SMOE_PATHLEN]; /* "DIR[:STEP]": step 0 planned from its loads; "" none */
  double capacity_factor; /* capacity policy */
  int min_capacity;
  char drop_order[16];    /* capacity policy: "position" or "weight" */
  /* [checkpoint] */
  char ckpt_dir[SMOE_PATHLEN]; /* "" = <run folder>/state */
  int ckpt_interval;           /* checkpoint every N steps; 0 = not by steps */
  double ckpt_every_seconds;   /* ... and after N seconds without one; 0 = off */
  int ckpt_full_every;         /* a full checkpoint every N, deltas between */
  int ckpt_keep;               /* globally complete checkpoints kept */
  char ckpt_mode[8];           /* "async" or "sync" */
  char ckpt_when_busy[8];      /* "wait" or "skip" */
  int ckpt_level;              /* zstd level */
  int ckpt_chunk_mb;           /* chunk size */
  int ckpt_plan_log_mb;        /* the placement log's budget per rank; 0 = unbounded */
  char ckpt_redundancy[8];     /* "buddy" (rank g keeps a copy of g-1's) or "none" */
  char ckpt_log_gradients[4];  /* "on" (a gradient log record every step) or "off" */
  int ckpt_log_buffers;        /* its staging buffers: the most steps it may lag */
  /* [metrics] */
  int log_every;      /* a metrics.jsonl line every N steps */
  char progress[8];   /* "auto" (a live line on a terminal), "on", "off" */
  int all_ranks;      /* every rank prints, not only rank 0 */
} smoe_config_t;

/* An integer key set to "auto" (training.warmup_steps) holds this. */
#define SMOE_AUTO (-1)

/* The warmup steps a run uses: training.warmup_steps, or for auto
 * training.steps / 20, at most 50 (so a short run is never refused). */
int smoe_config_warmup(const smoe_config_t *c);

/* Fills c with the built-in defaults (identical to configs/tiny.ini). */
void smoe_config_defaults(smoe_config_t *c);

/* Reads an INI file over c. Unknown sections/keys and bad values are errors
 * naming the file, line, key, value and what is allowed. Returns 0 or -1. */
int smoe_config_load(smoe_config_t *c, const char *path, smoe_err_t *err);

/* Applies one "section.key=value" override. Returns 0 or -1. */
int smoe_config_set(smoe_config_t *c, const char *assignment, smoe_err_t *err);

/* Cross-field checks (top_k <= num_experts, heads divide dim, ...). Returns 0 or -1. */
int smoe_config_validate(const smoe_config_t *c, smoe_err_t *err);

/* Writes the resolved config as INI (every key, with its help as a comment). */
int smoe_config_write(const smoe_config_t *c, FILE *f);

/* Writes the key reference as a markdown table (for the README). */
void smoe_config_write_markdown(FILE *f);

#endif
