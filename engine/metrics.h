/* metrics.h: the run folder's metrics.jsonl and summary.json, and the
 * progress display (a live line on a terminal, plain lines otherwise). */
#ifndef SMOE_METRICS_H
#define SMOE_METRICS_H

#include "common.h"

typedef struct smoe_metrics smoe_metrics_t;

/* One step's record. expert_counts (L, E) may be NULL. val_loss < 0: none. */
typedef struct {
  int64_t step; /* 1-based: the number of optimizer steps taken */
  double loss, ce, aux_loss, z_loss, lr, grad_norm, val_loss;
  int64_t tokens;     /* training tokens seen so far */
  int64_t step_tokens;
  double step_time_s;
  const int64_t *expert_counts; /* (L, E) tokens routed to each expert, all ranks */
  int L, E, G;
  const int64_t *rank_tokens;    /* (G, L) tokens each rank computed per layer; may be NULL */
  double imbalance;              /* mean over layers of max/mean rank tokens */
  const double *layer_imbalance; /* (L) */
  int64_t dropped;               /* assignments dropped this step (capacity), all layers */
  int64_t shadows;               /* same-step shadows placed this step, all layers */
  const int64_t *bytes;          /* (SMOE_PHASE_COUNT) bytes sent this step, all ranks; may be NULL */
  const int *replicas;           /* (L, E) replicas of each expert this step; may be NULL */
  double plan_time_s, split_time_s; /* planning the next placement, splitting this step */
  const char *ckpt;    /* a checkpoint of this step: "async", "sync", "skipped" (busy); or NULL */
  double ckpt_stall_s; /* how long it blocked the step loop (staging, waiting) */
  int64_t ckpt_global; /* a checkpoint step agreed globally complete at this step, or -1 */
  int64_t logged;      /* gradient log: the newest step on disk on every rank, or -1 (off) */
  double log_stall_s;  /* how long its staging took in this step */
  const char *sample;  /* a text sample of the model after this step (sample_every), or NULL */
} smoe_step_record_t;

/* Opens dir/metrics.jsonl for writing; progress: "auto", "on" or "off";
 * total_steps for the progress display. resume_step >= 0 (a resumed run):
 * keeps the file's lines up to that step and appends after them (the lines
 * after it belong to lost steps); *last_logged gets the last step the file
 * had (0 if none) and *last_announced the newest step its lines announced
 * logged on every rank by the gradient log (-1 if none). NULL with err set
 * on failure. */
smoe_metrics_t *smoe_metrics_open(const char *dir, const char *progress, int64_t total_steps,
                                  int64_t resume_step, int64_t *last_logged,
                                  int64_t *last_announced, smoe_err_t *err);
/* Appends one JSON line (flushed) when write is set; updates the display. */
int smoe_metrics_step(smoe_metrics_t *mt, const smoe_step_record_t *r, int write, smoe_err_t *err);
/* Prints a message line without breaking the live display. */
void smoe_metrics_note(smoe_metrics_t *mt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smoe_metrics_close(smoe_metrics_t *mt);

#endif
